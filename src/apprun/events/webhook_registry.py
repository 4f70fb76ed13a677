"""The registry of webhooks: the management API a tenant uses.

Create, list, read, change, delete a webhook, rotate its secret, list its
deliveries with their attempts, and send a delivery again. Every change needs
``admin`` on ``webhooks``, reading needs ``read``; everything is scoped to the
request's tenant. Sending is the delivery worker's (`webhook_delivery`): the
registry only wakes it when a change gives it work (a webhook switched back
on, a delivery to send again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from apprun.events.envelope import valid_type
from apprun.events.webhook_signing import new_secret
from apprun.events.webhook_targets import WebhookTargets
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.errors import BadRequest, NotFound
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.service import Rbac

__all__ = ["WebhookRegistry"]

_FIELDS = frozenset({"url", "event_types", "description", "active"})


def _check_body(body: dict[str, Any]) -> None:
    """Only the writable fields, each of the right type (a 400, never a database error)."""
    if set(body) - _FIELDS:
        raise BadRequest("request.read_only_fields", details={"fields": sorted(set(body) - _FIELDS)})
    if "url" in body and not isinstance(body["url"], str):
        raise BadRequest("events.invalid_webhook_url", details={"reason": "a string is needed"})
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 1000):
        raise BadRequest("events.invalid_webhook", details={"field": "description"})
    if "active" in body and not isinstance(body["active"], bool):
        raise BadRequest("events.invalid_webhook", details={"field": "active"})


def _types(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) and valid_type(t) for t in value):
        raise BadRequest("events.invalid_webhook", details={"field": "event_types"})
    return sorted(set(value))


class WebhookRegistry:
    def __init__(
        self,
        db: Database,
        rbac: Rbac,
        targets: WebhookTargets,
        *,
        wake: Callable[[], None],
        changed: Callable[[str], None],
    ) -> None:
        self.db = db
        self.rbac = rbac
        self.targets = targets
        #: Tells the delivery worker it has work now rather than at its next poll.
        self._wake = wake
        #: Tells the consumer a tenant's webhooks changed (it keeps whether the tenant has any).
        self._changed = changed

    async def _tenant(self, ctx: RequestContext, action: str) -> str:
        await self.rbac.require(ctx, action, "webhooks")
        if ctx.tenant_id is None:
            raise BadRequest("tenancy.no_active_tenant")
        return ctx.tenant_id

    async def create(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        _check_body(body)
        url = body.get("url") or ""
        event_types = _types(body.get("event_types"))
        await self.targets.resolve(url)
        webhook_id, now, secret = new_id(), utcnow(), new_secret()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO apprun_webhooks (id, tenant_id, url, description, event_types, secret, active, "
                "consecutive_failures, created_by, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $9)",
                webhook_id,
                tenant,
                url,
                body.get("description"),
                json.dumps(event_types),
                secret,
                body.get("active", True),
                ctx.user_id,
                now,
            )
        self._changed(tenant)
        view = await self._load(tenant, webhook_id)
        view["secret"] = secret  # shown once; rotate to get a new one
        return view

    async def all(self, ctx: RequestContext) -> list[dict[str, Any]]:
        tenant = await self._tenant(ctx, "read")
        async with self.db.read() as conn:
            rows = await conn.fetch("SELECT * FROM apprun_webhooks WHERE tenant_id = $1 ORDER BY created_at", tenant)
        return [_webhook_view(r) for r in rows]

    async def get(self, ctx: RequestContext, webhook_id: str) -> dict[str, Any]:
        return await self._load(await self._tenant(ctx, "read"), webhook_id)

    async def _load(self, tenant: str, webhook_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
        if row is None:
            raise NotFound("events.webhook_not_found")
        return _webhook_view(row)

    async def update(self, ctx: RequestContext, webhook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        _check_body(body)
        event_types = _types(body["event_types"]) if "event_types" in body else None
        if "url" in body:
            await self.targets.resolve(body["url"])
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT id FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
            if row is None:
                raise NotFound("events.webhook_not_found")
            now = utcnow()
            if "url" in body:
                await conn.execute("UPDATE apprun_webhooks SET url = $2 WHERE id = $1", webhook_id, body["url"])
            if event_types is not None:
                await conn.execute(
                    "UPDATE apprun_webhooks SET event_types = $2 WHERE id = $1", webhook_id, json.dumps(event_types)
                )
            if "description" in body:
                await conn.execute(
                    "UPDATE apprun_webhooks SET description = $2 WHERE id = $1", webhook_id, body["description"]
                )
            if "active" in body:
                # Switching a webhook back on forgives its past failures.
                await conn.execute(
                    "UPDATE apprun_webhooks SET active = $2, disabled_at = NULL, disabled_reason = NULL, "
                    "consecutive_failures = 0 WHERE id = $1",
                    webhook_id,
                    body["active"],
                )
            await conn.execute("UPDATE apprun_webhooks SET updated_at = $2 WHERE id = $1", webhook_id, now)
        self._changed(tenant)
        if body.get("active"):
            self._wake()  # deliveries held back while it was off go out now
        return await self._load(tenant, webhook_id)

    async def rotate_secret(self, ctx: RequestContext, webhook_id: str) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        secret = new_secret()
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE apprun_webhooks SET secret = $3, updated_at = $4 WHERE id = $1 AND tenant_id = $2",
                webhook_id,
                tenant,
                secret,
                utcnow(),
            )
        if changed == 0:
            raise NotFound("events.webhook_not_found")
        return {"id": webhook_id, "secret": secret}

    async def delete(self, ctx: RequestContext, webhook_id: str) -> None:
        tenant = await self._tenant(ctx, "admin")
        async with self.db.transaction() as conn:
            deleted = await conn.execute(
                "DELETE FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
        self._changed(tenant)
        if deleted == 0:
            raise NotFound("events.webhook_not_found")

    async def deliveries(self, ctx: RequestContext, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.get(ctx, webhook_id)
        # Two queries, not one per delivery; the payloads (up to 64 KiB each) are not read.
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT id, event_id, event_type, status, next_attempt_at, created_at FROM apprun_webhook_deliveries "
                "WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                webhook_id,
                max(1, min(limit, 200)),
            )
            attempts = await conn.fetch(
                "SELECT delivery_id, attempt, status_code, error, duration_ms, created_at FROM apprun_webhook_attempts "
                "WHERE delivery_id IN (SELECT id FROM apprun_webhook_deliveries WHERE webhook_id = $1 "
                "ORDER BY created_at DESC, id DESC LIMIT $2) ORDER BY delivery_id, attempt",
                webhook_id,
                max(1, min(limit, 200)),
            )
        by_delivery: dict[str, list[Any]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
        return [_delivery_view(row, by_delivery.get(row["id"], [])) for row in rows]

    async def redeliver(self, ctx: RequestContext, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        # A write: it makes apprun call the URL again (reading deliveries needs only `read`).
        tenant = await self._tenant(ctx, "admin")
        await self._load(tenant, webhook_id)
        async with self.db.transaction() as conn:
            # claimed_at is left alone: clearing it would let a second worker
            # send a delivery that is in flight right now a second time.
            changed = await conn.execute(
                "UPDATE apprun_webhook_deliveries SET status = 'pending', next_attempt_at = $3, "
                "first_attempt_at = NULL, updated_at = $3 WHERE id = $1 AND webhook_id = $2",
                delivery_id,
                webhook_id,
                utcnow(),
            )
        if changed == 0:
            raise NotFound("events.delivery_not_found")
        self._wake()
        return {"id": delivery_id, "status": "pending"}


def _webhook_view(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": json.loads(row["event_types"] or "[]"),
        "active": bool(row["active"]),
        "consecutive_failures": int(row["consecutive_failures"]),
        "disabled_at": isoformat(to_datetime(row["disabled_at"])),
        "disabled_reason": row["disabled_reason"],
        "created_at": isoformat(to_datetime(row["created_at"])),
        "updated_at": isoformat(to_datetime(row["updated_at"])),
    }


def _delivery_view(row: Any, attempts: list[Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": [
            {
                "attempt": a["attempt"],
                "status_code": a["status_code"],
                "error": a["error"],
                "duration_ms": a["duration_ms"],
                "at": isoformat(to_datetime(a["created_at"])),
            }
            for a in attempts
        ],
        "next_attempt_at": isoformat(to_datetime(row["next_attempt_at"])) if row["status"] == "pending" else None,
        "created_at": isoformat(to_datetime(row["created_at"])),
    }
