"""events: CloudEvents, the transactional outbox and its relay, the bus (in-process
or NATS JetStream), subscriptions with de-duplication and dead letters, the
events API with a live tail, and webhooks. See docs/events.md.

Publishing a change's event is one call inside the change's transaction::

    from apprun.events import emit, make_event

    async with db.transaction() as conn:
        ...  # the change
        await emit(conn, make_event("apprun.order.created", tenant_id=t, subject=f"orders/{oid}", data={...}))

Subscribing, for Python code that runs inside apprun::

    from apprun.events import subscribe

    @subscribe("apprun.record.created", collection="orders")
    async def on_order(event, ctx):
        await ctx.conn.execute("UPDATE … WHERE id = $1", event.data["id"])
"""

from __future__ import annotations

from apprun.events.envelope import CloudEvent, make_event
from apprun.events.outbox import emit
from apprun.events.subscriptions import HandlerContext, subscribe

__all__ = ["CloudEvent", "HandlerContext", "emit", "make_event", "subscribe"]
