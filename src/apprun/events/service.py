"""Events as a product feature: a tenant publishes its own, lists them, tails them.

A tenant's own event types live under ``app.`` (``app.order.shipped``), so
they can never pass for an event of the platform (``apprun.…``). Publishing
needs ``publish`` on ``events``; reading and tailing ``read`` on ``events``.
The history is the outbox itself, kept ``EVENTS_RETENTION_DAYS``.

Both the history and the live stream show each event to the
`EventVisibility` port first: an event about a record reaches a reader only
if the data API would show that reader the row (see events/visibility.py and
data/visibility.py). A live stream also re-checks its reader's session at a
bounded interval and ends when it no longer holds (events/streams.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

from apprun.events.bus import EventBus
from apprun.events.envelope import CloudEvent, decode, encode, make_event, valid_type
from apprun.events.outbox import emit
from apprun.events.streams import LiveStream, SessionCheck
from apprun.events.visibility import EventVisibility, Visibilities
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.errors import BadRequest
from apprun.rbac.service import POLICY_VERSION, Rbac

__all__ = ["Events"]

MAX_DATA_BYTES = 64 * 1024
MAX_PAGE = 500
#: History rows looked at for one page at most: a page holds fewer than ``limit``
#: events when most recent ones are hidden from the reader, rather than scan the whole outbox.
MAX_SCAN = 10 * MAX_PAGE
#: The code a stream ends with when its reader lost ``read`` on ``events``.
FORBIDDEN = "auth.forbidden"


class Events:
    def __init__(self, db: Database, bus: EventBus, rbac: Rbac, *, recheck_every: float = 15.0) -> None:
        self.db = db
        self.bus = bus
        self.rbac = rbac
        self.recheck_every = recheck_every
        self.visibility = Visibilities()
        self.sessions: SessionCheck | None = None

    def use(self, *, visibility: EventVisibility | None = None, sessions: SessionCheck | None = None) -> None:
        """Fill the ports of the modules above (each in its `wire`): the data API's rules, auth's session check.

        A port whose module is switched off keeps its default: record events withheld, no session re-check.
        """
        if visibility is not None:
            self.visibility.records = visibility
        if sessions is not None:
            self.sessions = sessions

    def decide(self, prefix: str, visibility: EventVisibility) -> None:
        """Let a module above decide who receives its events (``prefix``: ``apprun.object.``); see `Visibilities`."""
        self.visibility.decide(prefix, visibility)

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
        wanted = max(1, min(limit, MAX_PAGE))
        out: list[dict[str, Any]] = []
        before: str | None = None
        scanned = 0
        # Page by id, newest first, until `wanted` events the reader may see (or MAX_SCAN rows looked at).
        while len(out) < wanted and scanned < MAX_SCAN:
            page_clauses, page_args = list(clauses), list(args)
            if before is not None:
                page_args.append(before)
                page_clauses.append(f"id < ${len(page_args)}")
            page_args.append(wanted)
            sql = (
                "SELECT id, payload, published_at FROM apprun_event_outbox WHERE "  # noqa: S608 - fixed clauses
                + " AND ".join(page_clauses)
                + f" ORDER BY id DESC LIMIT ${len(page_args)}"
            )
            async with self.db.read() as conn:
                rows = await conn.fetch(sql, *page_args)
            scanned += len(rows)
            for row in rows:
                body = await self._shown(ctx, row["payload"])
                if body is not None and len(out) < wanted:
                    body["published"] = row["published_at"] is not None
                    out.append(body)
            if len(rows) < wanted:
                break
            before = rows[-1]["id"]
        return out

    async def _shown(self, ctx: RequestContext, payload: str) -> dict[str, Any] | None:
        """A history row as ``ctx`` may see it (None: not at all)."""
        event = decode(payload)
        shown = await self.visibility.visible(ctx, event)
        if shown is None:
            return None
        body: dict[str, Any] = json.loads(payload if shown is event else encode(shown))
        return body

    async def open_stream(self, ctx: RequestContext, types: tuple[str, ...]) -> LiveStream:
        """Check ``read`` on ``events`` now and start listening: the tenant's events as they are published.

        Listening has begun when this returns (the bus subscription is made,
        or the outbox position read), so nothing published afterwards is missed.
        """
        tenant = await self._tenant(ctx, "read")
        tail = getattr(self.bus, "tail", None)
        source: AsyncIterator[CloudEvent]
        if tail is not None:
            source = await tail(tenant, types)
        else:
            # The in-process bus lives in one worker only: follow the outbox instead,
            # which every worker can read.
            source = await self._follow_outbox(tenant, types)
        # Without the policy version the request read, RBAC looks the tenant's current one up:
        # each event is decided with the reader's rights of the moment, not of the stream's start.
        reader = dataclasses.replace(ctx, extra={k: v for k, v in ctx.extra.items() if k != POLICY_VERSION})

        async def recheck() -> str | None:
            return await self._still_reads(ctx, reader)

        return LiveStream(reader, source, visibility=self.visibility, recheck=recheck, recheck_every=self.recheck_every)

    async def _still_reads(self, ctx: RequestContext, reader: RequestContext) -> str | None:
        """Why the stream's reader no longer holds (a code), or None: session first, then ``read`` on ``events``."""
        if self.sessions is not None:
            reason = await self.sessions.recheck(ctx)
            if reason is not None:
                return reason
        decision = await self.rbac.authorize(reader, "read", "events")
        if decision.allowed:
            return None
        # The credential may have gone between the two checks (a key revoked, a member removed: the
        # rule then finds no role): its own reason says more than the rule's.
        if self.sessions is not None and (reason := await self.sessions.recheck(ctx)) is not None:
            return reason
        return FORBIDDEN

    async def _follow_outbox(self, tenant: str, types: tuple[str, ...]) -> AsyncIterator[CloudEvent]:
        async with self.db.read() as conn:
            last = await conn.fetchval(
                "SELECT max(id) FROM apprun_event_outbox WHERE tenant_id = $1 AND published_at IS NOT NULL", tenant
            )
        return self._outbox_after(tenant, types, last or "")

    async def _outbox_after(self, tenant: str, types: tuple[str, ...], last: str) -> AsyncIterator[CloudEvent]:
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
