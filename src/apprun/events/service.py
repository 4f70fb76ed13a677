"""Events as a product feature: a tenant publishes its own, lists them, tails them.

A tenant's own event types live under ``app.`` (``app.order.shipped``), so
they can never pass for an event of the platform (``apprun.…``). Publishing
needs ``publish`` on ``events``; reading and tailing ``read`` on ``events``.
The history is the outbox itself, kept ``EVENTS_RETENTION_DAYS``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

from apprun.events.bus import EventBus
from apprun.events.envelope import CloudEvent, decode, make_event, valid_type
from apprun.events.outbox import emit
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.errors import BadRequest
from apprun.rbac.service import Rbac

__all__ = ["Events"]

MAX_DATA_BYTES = 64 * 1024
MAX_PAGE = 500


class Events:
    def __init__(self, db: Database, bus: EventBus, rbac: Rbac) -> None:
        self.db = db
        self.bus = bus
        self.rbac = rbac

    async def _tenant(self, ctx: RequestContext, action: str) -> str:
        await self.rbac.require(ctx, action, "events")
        if ctx.tenant_id is None:
            raise BadRequest("tenancy.no_active_tenant")
        return ctx.tenant_id

    async def publish(self, ctx: RequestContext, *, event_type: str, subject: str | None, data: Any) -> CloudEvent:
        tenant = await self._tenant(ctx, "publish")
        if not valid_type(event_type):
            raise BadRequest("events.invalid_type", params={"type": event_type})
        if not event_type.startswith("app."):
            raise BadRequest("events.type_not_allowed", params={"type": event_type})
        if subject is not None and (not isinstance(subject, str) or len(subject) > 500):
            raise BadRequest("request.invalid", details={"field": "subject"})
        if len(json.dumps(data, separators=(",", ":"), default=str).encode()) > MAX_DATA_BYTES:
            raise BadRequest("events.data_too_large", params={"max": MAX_DATA_BYTES})
        event = make_event(event_type, tenant_id=tenant, subject=subject, data=data)
        async with self.db.transaction() as conn:
            await emit(conn, event)
        return event

    async def history(
        self,
        ctx: RequestContext,
        *,
        event_type: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        tenant = await self._tenant(ctx, "read")
        clauses: list[str] = ["tenant_id = $1"]
        args: list[Any] = [tenant]
        if event_type:
            args.append(event_type)
            clauses.append(f"type = ${len(args)}")
        if since:
            args.append(since)
            clauses.append(f"created_at >= ${len(args)}")
        if until:
            args.append(until)
            clauses.append(f"created_at < ${len(args)}")
        args.append(max(1, min(limit, MAX_PAGE)))
        sql = (
            "SELECT payload, published_at FROM apprun_event_outbox WHERE "  # noqa: S608 - fixed clauses
            + " AND ".join(clauses)
            + f" ORDER BY id DESC LIMIT ${len(args)}"
        )
        async with self.db.read() as conn:
            rows = await conn.fetch(sql, *args)
        out = []
        for row in rows:
            body = json.loads(row["payload"])
            body["published"] = row["published_at"] is not None
            out.append(body)
        return out

    async def open_stream(self, ctx: RequestContext, types: tuple[str, ...]) -> AsyncIterator[CloudEvent]:
        """Check ``read`` on ``events`` now, then: the tenant's events as they are published."""
        tenant = await self._tenant(ctx, "read")
        tail = getattr(self.bus, "tail", None)
        if tail is not None:
            stream: AsyncIterator[CloudEvent] = tail(tenant, types)
            return stream
        # The in-process bus lives in one worker only: follow the outbox instead,
        # which every worker can read.
        return self._follow_outbox(tenant, types)

    async def _follow_outbox(self, tenant: str, types: tuple[str, ...]) -> AsyncIterator[CloudEvent]:
        async with self.db.read() as conn:
            last = await conn.fetchval(
                "SELECT max(id) FROM apprun_event_outbox WHERE tenant_id = $1 AND published_at IS NOT NULL", tenant
            )
        last = last or ""
        while True:
            async with self.db.read() as conn:
                rows = await conn.fetch(
                    "SELECT id, payload FROM apprun_event_outbox WHERE tenant_id = $1 AND id > $2 "
                    "AND published_at IS NOT NULL ORDER BY id LIMIT 200",
                    tenant,
                    last,
                )
            for row in rows:
                last = row["id"]
                event = decode(row["payload"])
                if not types or event.type in types:
                    yield event
            if not rows:
                await asyncio.sleep(0.25)
