"""The delivery side of webhooks: record a delivery per event, send it, retry it.

- The *consumer* (`WebhookDelivery.on_event`, a durable event subscriber)
  records one pending delivery per matching active webhook, in the
  transaction that marks the event processed, so each event makes each
  delivery exactly once.
- The *worker* claims due deliveries (a lease, so several processes share
  the work), POSTs each and records the attempt: a 2xx answer is a success;
  anything else, a timeout or a refused address is a failed attempt, retried
  after ``WEBHOOK_BACKOFF_BASE`` seconds, then doubling (at most 6 h apart),
  until ``WEBHOOK_RETRY_PERIOD`` has passed since the first attempt; then the
  delivery is abandoned. After ``WEBHOOK_DISABLE_AFTER`` abandoned deliveries
  in a row the webhook is switched off.

The request: the CloudEvent in JSON structured mode, the Standard Webhooks
headers (`apprun.events.webhook_signing`), sent to the address checked just
before (`WebhookTargets`); it ignores the server's proxy variables and
``.netrc``, follows no redirect and never reads the answer's body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from typing import Any

import httpx

from apprun.events.envelope import CloudEvent, encode
from apprun.events.settings import EventsSettings
from apprun.events.ssrf import Target
from apprun.events.subscriptions import HandlerContext
from apprun.events.webhook_signing import sign
from apprun.events.webhook_targets import WebhookTargets
from apprun.kernel.db import Database
from apprun.kernel.errors import ApiError
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import to_datetime, utcnow

__all__ = ["WebhookDelivery"]

# The logger keeps the name it had before the registry and the worker were
# split: it is the `component` of the log lines, which deployments may filter on.
_log = get_logger("apprun.events.webhooks")
_CLAIM_LEASE = dt.timedelta(minutes=5)
_MAX_BACKOFF = 6 * 3600.0
#: Longest idle sleep of the worker: how soon it sees deliveries another process recorded.
_POLL = 0.5
#: How long the answer to "has this tenant an active webhook?" is reused: the longest a webhook
#: created or switched on through another process waits for its first event (this process's own
#: changes are seen at once).
ACTIVE_TTL = 2.0
#: Tenants whose answer is kept at most; past it the answers are dropped (and asked again).
_ACTIVE_MAX = 10_000


def _request_headers(target: Target, secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """The headers of one attempt; ``Host`` names the URL's host, not the pinned address."""
    timestamp = int(time.time())
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    return {
        "Host": host if target.port == default_port else f"{host}:{target.port}",
        "Content-Type": "application/cloudevents+json",
        "User-Agent": "apprun-webhooks",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


class WebhookDelivery:
    def __init__(self, settings: EventsSettings, db: Database, targets: WebhookTargets) -> None:
        self.settings = settings
        self.db = db
        self.targets = targets
        self.backoff_base = settings.webhook_backoff_base
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: tenant id -> (has an active webhook, monotonic time the answer expires)
        self._active: dict[str, tuple[bool, float]] = {}
        #: Bumped by `forget`: an answer read before a change is not kept after it.
        self._generation = 0

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    # --- the consumer: event -> deliveries ----------------------------------
    async def wants(self, event: CloudEvent) -> bool:
        """Whether the event's tenant has any active webhook (an indexed read, its answer reused `ACTIVE_TTL` s).

        Most events have no webhook to go to; they are acked without opening a
        transaction, and without a query per event: the answer is kept per
        tenant for `ACTIVE_TTL` seconds. A change made through this process
        (`forget`) is seen by the next event; one made through another process
        within `ACTIVE_TTL`. A kept "yes" that has gone stale costs only a
        transaction: `on_event` reads the webhooks themselves.
        """
        tenant = event.tenantid
        if tenant is None:
            return False
        now = time.monotonic()
        known = self._active.get(tenant)
        if known is not None and known[1] > now:
            return known[0]
        generation = self._generation
        async with self.db.read() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM apprun_webhooks WHERE tenant_id = $1 AND active = $2 LIMIT 1", tenant, True
            )
        if generation == self._generation:  # no change here while it was read
            if len(self._active) >= _ACTIVE_MAX:
                self._active.clear()
            self._active[tenant] = (found is not None, now + ACTIVE_TTL)
        return found is not None

    def forget(self, tenant_id: str) -> None:
        """The tenant's webhooks changed (in this process): ask the database at its next event."""
        self._generation += 1
        self._active.pop(tenant_id, None)

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
            ctx.conn.on_commit(self.wake)

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
            target = await self.targets.resolve(url)
        except ApiError as exc:
            return None, f"{exc.code}: {exc.details or exc.params}"[:500], 0.0
        headers = _request_headers(target, secret, msg_id, body)
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
