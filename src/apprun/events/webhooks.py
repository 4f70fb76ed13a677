"""Webhooks: a tenant's events POSTed to its own HTTPS endpoints.

A webhook has a URL, the event types it wants (empty: all), a secret and an
active flag. For every event of its tenant that matches, a *delivery* is
recorded — by a durable event consumer, in the transaction that marks the
event processed, so each event makes each delivery exactly once — and a
worker POSTs it:

- body: the CloudEvent in JSON structured mode
  (``Content-Type: application/cloudevents+json``);
- headers of the Standard Webhooks scheme: ``webhook-id`` (the event id,
  the same on every retry), ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``
  where the key is the base64 part of the ``whsec_…`` secret;
- a 2xx answer is a success; anything else, a timeout or a refused address
  is a failed attempt, retried after 10 s, 20 s, 40 s … (doubling, at most
  6 h apart) until ``WEBHOOK_RETRY_PERIOD`` has passed since the first
  attempt; then the delivery is abandoned. After ``WEBHOOK_DISABLE_AFTER``
  abandoned deliveries in a row the webhook is switched off.

Every attempt is logged with its status code, error and duration, readable
by the tenant; a delivery can be sent again on request. Targets are checked
against server-side request forgery (see `apprun.events.ssrf`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from apprun.events.envelope import CloudEvent, encode, valid_type
from apprun.events.ssrf import Allowlist, check_url, resolve_target
from apprun.events.subscriptions import HandlerContext
from apprun.kernel.config import Settings
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.errors import ApiError, BadRequest, NotFound
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.service import Rbac

__all__ = ["Webhooks", "sign"]

_log = get_logger("apprun.events.webhooks")
_CLAIM_LEASE = dt.timedelta(minutes=5)
_MAX_BACKOFF = 6 * 3600.0


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks scheme."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _types(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) and valid_type(t) for t in value):
        raise BadRequest("events.invalid_webhook", details={"field": "event_types"})
    return sorted(set(value))


class Webhooks:
    def __init__(self, settings: Settings, db: Database, rbac: Rbac) -> None:
        self.settings = settings
        self.db = db
        self.rbac = rbac
        self.allowlist = Allowlist(settings.webhook_allowlist)
        self.backoff_base = settings.webhook_backoff_base
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- management --------------------------------------------------------
    async def _tenant(self, ctx: RequestContext, action: str) -> str:
        await self.rbac.require(ctx, action, "webhooks")
        if ctx.tenant_id is None:
            raise BadRequest("tenancy.no_active_tenant")
        return ctx.tenant_id

    async def create(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        allowed = {"url", "event_types", "description", "active"}
        if set(body) - allowed:
            raise BadRequest("request.read_only_fields", details={"fields": sorted(set(body) - allowed)})
        url = str(body.get("url") or "")
        check_url(url)
        await resolve_target(url, self.allowlist)
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
                json.dumps(_types(body.get("event_types"))),
                secret,
                bool(body.get("active", True)),
                ctx.user_id,
                now,
            )
        view = await self.get(ctx, webhook_id)
        view["secret"] = secret  # shown once; rotate to get a new one
        return view

    async def all(self, ctx: RequestContext) -> list[dict[str, Any]]:
        tenant = await self._tenant(ctx, "read")
        async with self.db.read() as conn:
            rows = await conn.fetch("SELECT * FROM apprun_webhooks WHERE tenant_id = $1 ORDER BY created_at", tenant)
        return [self._view(r) for r in rows]

    async def get(self, ctx: RequestContext, webhook_id: str) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "read")
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
        if row is None:
            raise NotFound("events.webhook_not_found")
        return self._view(row)

    async def update(self, ctx: RequestContext, webhook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        allowed = {"url", "event_types", "description", "active"}
        if set(body) - allowed:
            raise BadRequest("request.read_only_fields", details={"fields": sorted(set(body) - allowed)})
        if "url" in body:
            check_url(str(body["url"]))
            await resolve_target(str(body["url"]), self.allowlist)
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT id FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
            if row is None:
                raise NotFound("events.webhook_not_found")
            now = utcnow()
            if "url" in body:
                await conn.execute("UPDATE apprun_webhooks SET url = $2 WHERE id = $1", webhook_id, str(body["url"]))
            if "event_types" in body:
                await conn.execute(
                    "UPDATE apprun_webhooks SET event_types = $2 WHERE id = $1",
                    webhook_id,
                    json.dumps(_types(body["event_types"])),
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
                    bool(body["active"]),
                )
            await conn.execute("UPDATE apprun_webhooks SET updated_at = $2 WHERE id = $1", webhook_id, now)
        return await self.get(ctx, webhook_id)

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
        if deleted == 0:
            raise NotFound("events.webhook_not_found")

    async def deliveries(self, ctx: RequestContext, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        await self.get(ctx, webhook_id)
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT * FROM apprun_webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC LIMIT $2",
                webhook_id,
                max(1, min(limit, 200)),
            )
            out = []
            for row in rows:
                attempts = await conn.fetch(
                    "SELECT attempt, status_code, error, duration_ms, created_at FROM apprun_webhook_attempts "
                    "WHERE delivery_id = $1 ORDER BY attempt",
                    row["id"],
                )
                out.append(self._delivery_view(row, attempts))
        return out

    async def redeliver(self, ctx: RequestContext, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        await self.get(ctx, webhook_id)
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE apprun_webhook_deliveries SET status = 'pending', next_attempt_at = $3, claimed_at = NULL, "
                "first_attempt_at = NULL, updated_at = $3 WHERE id = $1 AND webhook_id = $2",
                delivery_id,
                webhook_id,
                utcnow(),
            )
        if changed == 0:
            raise NotFound("events.delivery_not_found")
        self._wake.set()
        return {"id": delivery_id, "status": "pending"}

    # --- the consumer: event -> deliveries ----------------------------------
    async def on_event(self, event: CloudEvent, ctx: HandlerContext) -> None:
        if event.tenantid is None:
            return
        rows = await ctx.conn.fetch(
            "SELECT id, event_types FROM apprun_webhooks WHERE tenant_id = $1 AND active = $2", event.tenantid, True
        )
        now = utcnow()
        created = False
        for row in rows:
            types = json.loads(row["event_types"] or "[]")
            if types and event.type not in types:
                continue
            await ctx.conn.execute(
                "INSERT INTO apprun_webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, payload, "
                "status, attempts, next_attempt_at, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
                new_id(),
                row["id"],
                event.tenantid,
                event.id,
                event.type,
                encode(event).decode(),
                now,
            )
            created = True
        if created:
            ctx.conn.on_commit(self._wake.set)

    # --- the worker -----------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="apprun-webhook-worker")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.deliver_due()
            except ApiError as exc:
                _log.warning("webhook_worker_retry", code=exc.code)
                busy = 0
            except Exception:  # noqa: BLE001 - the worker must outlive any single failure
                _log.exception("webhook_worker_failed")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):  # not wait_for: see Relay._sleep
                        await self._wake.wait()
                self._wake.clear()

    async def deliver_due(self) -> int:
        now = utcnow()
        async with self.db.read() as conn:
            due = await conn.fetch(
                "SELECT d.id FROM apprun_webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $1 "
                "AND (d.claimed_at IS NULL OR d.claimed_at < $2) ORDER BY d.next_attempt_at LIMIT 20",
                now,
                now - _CLAIM_LEASE,
            )
        mine = [row["id"] for row in due if await self._claim(row["id"])]
        await asyncio.gather(*(self._attempt(delivery_id) for delivery_id in mine))
        return len(mine)

    async def _claim(self, delivery_id: str) -> bool:
        now = utcnow()
        async with self.db.transaction() as conn:
            claimed = await conn.execute(
                "UPDATE apprun_webhook_deliveries SET claimed_at = $2 WHERE id = $1 AND status = 'pending' "
                "AND (claimed_at IS NULL OR claimed_at < $3)",
                delivery_id,
                now,
                now - _CLAIM_LEASE,
            )
        return claimed == 1

    async def _attempt(self, delivery_id: str) -> None:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT d.id, d.webhook_id, d.event_id, d.payload, d.attempts, d.first_attempt_at, w.url, w.secret "
                "FROM apprun_webhook_deliveries d JOIN apprun_webhooks w ON w.id = d.webhook_id WHERE d.id = $1",
                delivery_id,
            )
        if row is None:
            return
        status, error, duration = await self._post(row["url"], row["secret"], row["event_id"], row["payload"].encode())
        await self._record(row, status, error, duration)

    async def _post(self, url: str, secret: str, msg_id: str, body: bytes) -> tuple[int | None, str | None, float]:
        start = time.perf_counter()
        try:
            target = await resolve_target(url, self.allowlist)
        except ApiError as exc:
            return None, f"{exc.code}: {exc.details or exc.params}", 0.0
        timestamp = int(time.time())
        headers = {
            "Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
            "Content-Type": "application/cloudevents+json",
            "User-Agent": "apprun-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(timeout=self.settings.webhook_timeout, follow_redirects=False) as http:
                reply = await http.post(target.pinned_url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], (time.perf_counter() - start) * 1000
        duration = (time.perf_counter() - start) * 1000
        return reply.status_code, None if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}", duration

    async def _record(self, row: Any, status: int | None, error: str | None, duration: float) -> None:
        now = utcnow()
        attempt = int(row["attempts"]) + 1
        first = to_datetime(row["first_attempt_at"]) or now
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO apprun_webhook_attempts (id, delivery_id, attempt, status_code, error, duration_ms, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                new_id(),
                row["id"],
                attempt,
                status,
                error,
                round(duration, 1),
                now,
            )
            if error is None:
                await conn.execute(
                    "UPDATE apprun_webhook_deliveries SET status = 'succeeded', attempts = $2, last_status_code = $3, "
                    "last_error = NULL, first_attempt_at = $4, claimed_at = NULL, updated_at = $5 WHERE id = $1",
                    row["id"],
                    attempt,
                    status,
                    first,
                    now,
                )
                await conn.execute(
                    "UPDATE apprun_webhooks SET consecutive_failures = 0 WHERE id = $1", row["webhook_id"]
                )
                return
            elapsed = (now - first).total_seconds()
            delay = min(self.backoff_base * 2 ** (attempt - 1), _MAX_BACKOFF)
            if elapsed + delay > self.settings.webhook_retry_period:
                await conn.execute(
                    "UPDATE apprun_webhook_deliveries SET status = 'abandoned', attempts = $2, last_status_code = $3, "
                    "last_error = $4, first_attempt_at = $5, claimed_at = NULL, updated_at = $6 WHERE id = $1",
                    row["id"],
                    attempt,
                    status,
                    error,
                    first,
                    now,
                )
                await self._count_abandoned(conn, row["webhook_id"], now)
                return
            await conn.execute(
                "UPDATE apprun_webhook_deliveries SET attempts = $2, last_status_code = $3, last_error = $4, "
                "first_attempt_at = $5, next_attempt_at = $6, claimed_at = NULL, updated_at = $7 WHERE id = $1",
                row["id"],
                attempt,
                status,
                error,
                first,
                now + dt.timedelta(seconds=delay),
                now,
            )

    async def _count_abandoned(self, conn: Any, webhook_id: str, now: dt.datetime) -> None:
        await conn.execute(
            "UPDATE apprun_webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = $1", webhook_id
        )
        failures = await conn.fetchval("SELECT consecutive_failures FROM apprun_webhooks WHERE id = $1", webhook_id)
        if int(failures or 0) >= self.settings.webhook_disable_after:
            await conn.execute(
                "UPDATE apprun_webhooks SET active = $2, disabled_at = $3, disabled_reason = $4 WHERE id = $1",
                webhook_id,
                False,
                now,
                f"{failures} deliveries in a row failed for {self.settings.webhook_retry_period} s",
            )
            _log.warning("webhook_disabled", webhook_id=webhook_id, failures=failures)

    # --- views -------------------------------------------------------------
    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
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

    @staticmethod
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
