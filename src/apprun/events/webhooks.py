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
by the tenant; a delivery can be sent again on request (``admin`` on
``webhooks``, like every change). Targets are checked against server-side
request forgery (see `apprun.events.ssrf`), at registration and again at
every attempt; the request ignores proxy variables and ``.netrc`` of the
server, follows no redirect and never reads the answer's body.

An inactive webhook gets no new deliveries, and the worker holds back the
ones it still has until it is switched on again. Each event makes at most one
delivery per webhook even if the consumer sees it again after its
de-duplication marker is gone (see `Webhooks.on_event`).
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
from apprun.events.ssrf import Allowlist, Resolver, resolve_target, system_resolver
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
#: Longest idle sleep of the worker: how soon it sees deliveries another process recorded.
_POLL = 0.5
_FIELDS = frozenset({"url", "event_types", "description", "active"})


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks scheme."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


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


class Webhooks:
    def __init__(self, settings: Settings, db: Database, rbac: Rbac) -> None:
        self.settings = settings
        self.db = db
        self.rbac = rbac
        self.allowlist = Allowlist(settings.webhook_allowlist)
        #: Asked at registration and again before every attempt (see `apprun.events.ssrf`).
        self.resolver: Resolver = system_resolver
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
        _check_body(body)
        url = body.get("url") or ""
        event_types = _types(body.get("event_types"))
        await resolve_target(url, self.allowlist, self.resolver)
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
        view = await self._load(tenant, webhook_id)
        view["secret"] = secret  # shown once; rotate to get a new one
        return view

    async def all(self, ctx: RequestContext) -> list[dict[str, Any]]:
        tenant = await self._tenant(ctx, "read")
        async with self.db.read() as conn:
            rows = await conn.fetch("SELECT * FROM apprun_webhooks WHERE tenant_id = $1 ORDER BY created_at", tenant)
        return [self._view(r) for r in rows]

    async def get(self, ctx: RequestContext, webhook_id: str) -> dict[str, Any]:
        return await self._load(await self._tenant(ctx, "read"), webhook_id)

    async def _load(self, tenant: str, webhook_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM apprun_webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant
            )
        if row is None:
            raise NotFound("events.webhook_not_found")
        return self._view(row)

    async def update(self, ctx: RequestContext, webhook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        tenant = await self._tenant(ctx, "admin")
        _check_body(body)
        event_types = _types(body["event_types"]) if "event_types" in body else None
        if "url" in body:
            await resolve_target(body["url"], self.allowlist, self.resolver)
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
        if body.get("active"):
            self._wake.set()  # deliveries held back while it was off go out now
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
        return [self._delivery_view(row, by_delivery.get(row["id"], [])) for row in rows]

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
        self._wake.set()
        return {"id": delivery_id, "status": "pending"}

    # --- the consumer: event -> deliveries ----------------------------------
    async def wants(self, event: CloudEvent) -> bool:
        """Whether the event's tenant has any active webhook (one indexed read).

        Most events have no webhook to go to; they are acked without opening a
        transaction. A webhook created after this check was created after the
        event, and would not have received it anyway.
        """
        if event.tenantid is None:
            return False
        async with self.db.read() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM apprun_webhooks WHERE tenant_id = $1 AND active = $2 LIMIT 1", event.tenantid, True
            )
        return found is not None

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
                # The consumer's marker makes this run once per event; the unique
                # (webhook_id, event_id) keeps it so when an event is replayed
                # after its marker was pruned.
                "INSERT INTO apprun_webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, payload, "
                "status, attempts, next_attempt_at, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7) ON CONFLICT DO NOTHING",
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
                try:
                    idle = await self._idle_for()
                except ApiError:
                    idle = _POLL
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):  # not wait_for: see Relay._sleep
                        await self._wake.wait()
                self._wake.clear()

    async def _idle_for(self) -> float:
        """Seconds until the next retry is due (so backoff delays are kept), at most `_POLL`."""
        now = utcnow()
        async with self.db.read() as conn:
            due = await conn.fetchval(
                "SELECT min(d.next_attempt_at) FROM apprun_webhook_deliveries d "
                "JOIN apprun_webhooks w ON w.id = d.webhook_id WHERE d.status = 'pending' AND w.active = $1 "
                "AND (d.claimed_at IS NULL OR d.claimed_at < $2)",
                True,
                now - _CLAIM_LEASE,
            )
        due_at = to_datetime(due)
        if due_at is None:
            return _POLL
        return min(max((due_at - now).total_seconds(), 0.01), _POLL)

    async def deliver_due(self) -> int:
        now = utcnow()
        async with self.db.read() as conn:
            due = await conn.fetch(
                "SELECT d.id FROM apprun_webhook_deliveries d JOIN apprun_webhooks w ON w.id = d.webhook_id "
                "WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.active = $3 "
                "AND (d.claimed_at IS NULL OR d.claimed_at < $2) ORDER BY d.next_attempt_at LIMIT 20",
                now,
                now - _CLAIM_LEASE,
                True,
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
                "SELECT d.id, d.webhook_id, d.event_id, d.payload, d.attempts, d.first_attempt_at, w.url, w.secret, "
                "w.active FROM apprun_webhook_deliveries d JOIN apprun_webhooks w ON w.id = d.webhook_id "
                "WHERE d.id = $1",
                delivery_id,
            )
        if row is None:
            return
        if not row["active"]:  # switched off since it was picked: hand it back untouched
            async with self.db.transaction() as conn:
                await conn.execute("UPDATE apprun_webhook_deliveries SET claimed_at = NULL WHERE id = $1", delivery_id)
            return
        status, error, duration = await self._post(row["url"], row["secret"], row["event_id"], row["payload"].encode())
        await self._record(row, status, error, duration)

    async def _post(self, url: str, secret: str, msg_id: str, body: bytes) -> tuple[int | None, str | None, float]:
        start = time.perf_counter()
        try:
            target = await resolve_target(url, self.allowlist, self.resolver)
        except ApiError as exc:
            return None, f"{exc.code}: {exc.details or exc.params}"[:500], 0.0
        timestamp = int(time.time())
        host = f"[{target.host}]" if ":" in target.host else target.host
        default_port = 443 if target.scheme == "https" else 80
        headers = {
            "Host": host if target.port == default_port else f"{host}:{target.port}",
            "Content-Type": "application/cloudevents+json",
            "User-Agent": "apprun-webhooks",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        timeout = self.settings.webhook_timeout
        try:
            # httpx's timeout bounds each read, not the whole exchange: a receiver
            # that trickles its answer must not hold the worker, so one deadline
            # covers it all. The body of the answer is never read (it could be huge).
            # trust_env=False: no proxy from the environment (it would bypass the
            # pinned address) and no .netrc credentials sent to a tenant's URL.
            async with (
                asyncio.timeout(timeout),
                httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as http,
                http.stream("POST", target.pinned_url, content=body, headers=headers, extensions=extensions) as reply,
            ):
                status = reply.status_code
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {timeout:g} s", (time.perf_counter() - start) * 1000
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], (time.perf_counter() - start) * 1000
        duration = (time.perf_counter() - start) * 1000
        return status, None if 200 <= status < 300 else f"HTTP {status}", duration

    async def _record(self, row: Any, status: int | None, error: str | None, duration: float) -> None:
        now = utcnow()
        attempt = int(row["attempts"]) + 1
        first = to_datetime(row["first_attempt_at"]) or now
        if error is None:
            outcome, next_at = "succeeded", now
        else:
            elapsed = (now - first).total_seconds()
            delay = min(self.backoff_base * 2 ** (attempt - 1), _MAX_BACKOFF)
            abandon = elapsed + delay > self.settings.webhook_retry_period
            outcome, next_at = ("abandoned", now) if abandon else ("pending", now + dt.timedelta(seconds=delay))
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE apprun_webhook_deliveries SET status = $2, attempts = $3, last_status_code = $4, "
                "last_error = $5, first_attempt_at = $6, next_attempt_at = $7, claimed_at = NULL, updated_at = $8 "
                "WHERE id = $1",
                row["id"],
                outcome,
                attempt,
                status,
                error,
                first,
                next_at,
                now,
            )
            if changed == 0:  # deleted with its webhook meanwhile
                return
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
            if outcome == "succeeded":
                await conn.execute(
                    "UPDATE apprun_webhooks SET consecutive_failures = 0 WHERE id = $1", row["webhook_id"]
                )
            elif outcome == "abandoned":
                await self._count_abandoned(conn, row["webhook_id"], now)

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
