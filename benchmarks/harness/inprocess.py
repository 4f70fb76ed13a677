"""Workloads measured inside one Python process: authorization decisions, events end to end.

`raw_publish` and `Subscriber` are shared with ``benchmarks/events_throughput.py``, which measures
events emitted straight into the outbox rather than records created through the data API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import statistics
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database, create_database
from apprun.kernel.db.migrate import upgrade
from apprun.kernel.db.port import Connection
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.modules import MIGRATIONS, Settings
from apprun.rbac.service import POLICY_VERSION, Rbac
from apprun.tenancy.queries import TenantPolicyVersions
from benchmarks.harness.pocketbase import record

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import AsyncTestClient

    from apprun.events import CloudEvent, HandlerContext

__all__ = ["WAIT_S", "Subscriber", "authorization", "events", "raw_publish"]

#: The longest a measurement waits for its events to reach the subscriber.
WAIT_S = 300


class _Members:
    """One user holding the built-in ``member`` role in the tenant (as a membership would)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    async def role_assignments(self, conn: Connection, tenant_id: str) -> list[tuple[str, str]]:  # noqa: ARG002 - the port's signature
        return [(self.user_id, "member")]


async def _authorization(workdir: Path, seconds: float) -> dict[str, float]:
    settings = Settings(_env_file=None, apprun_data_dir=workdir, database_url=f"sqlite:///{workdir / 'authz.db'}")
    await upgrade(settings.database, MIGRATIONS)
    db = create_database(settings)
    await db.open()
    try:
        user, tenant = new_id(), new_id()
        rbac = Rbac(db, [_Members(user)], versions=TenantPolicyVersions())
        async with db.transaction() as conn:
            now = utcnow()
            await conn.execute(
                "INSERT INTO apprun_tenants (id, name, personal, policy_version, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                tenant, "bench", False, 1, now, now,
            )  # fmt: skip
            await rbac.seed_tenant(conn, tenant)
        ctx = RequestContext(
            request_id="bench", user_id=user, tenant_id=tenant, auth_method="jwt", extra={POLICY_VERSION: 1}
        )
        # Cached: the same question again, as every request of a user on one collection asks it.
        assert (await rbac.authorize(ctx, "read", "collection:bench_private")).allowed
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(1000):
                await rbac.authorize(ctx, "read", "collection:bench_private")
            n += 1000
        cached = n / (time.perf_counter() - start)
        # Uncached: a new object every time, so Casbin evaluates each one (the tenant's enforcer stays loaded).
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                await rbac.authorize(ctx, "read", f"collection:c{n}")
                n += 1
        uncached = n / (time.perf_counter() - start)
    finally:
        await db.close()
    return {"cached_per_s": cached, "uncached_per_s": uncached}


def authorization(workdir: Path, seconds: float) -> dict[str, float]:
    """Decisions per second through apprun's RBAC service, cached and uncached, in this process."""
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_authorization(workdir, seconds))


async def raw_publish(url: str, count: int, size: int) -> float:
    """Messages per second of ``count`` pipelined JetStream publishes of ``size`` bytes: the events' ceiling."""
    import nats  # here and below: the app and its clients load only for this workload, not at the harness's start

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="CEILING", subjects=["ceiling.>"])
        body = b"x" * size
        start = time.perf_counter()
        futures = [await js.publish_async("ceiling.t", body, headers={"Nats-Msg-Id": str(i)}) for i in range(count)]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    finally:
        await nc.close()
    return count / elapsed


class Subscriber:
    """An app whose one subscriber records when each event of ``event_type`` reaches it, until ``count`` have.

    The test client runs the app in a thread and event loop of its own (a blocking
    portal), so what the subscriber records is guarded by a lock and waited for
    with a thread event.
    """

    def __init__(self, event_type: str, count: int) -> None:
        from apprun.events.subscriptions import Registry

        self.registry = Registry()
        self._received: list[tuple[float, str]] = []  # (handled at, the event's own time)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._count = count

        @self.registry.subscribe(event_type, name="bench.recorder")
        async def on_event(event: CloudEvent, ctx: HandlerContext) -> None:  # noqa: ARG001 - a subscriber's signature
            with self._lock:
                self._received.append((time.time(), event.time or ""))
                if len(self._received) >= self._count:
                    self._done.set()

    def restart(self, count: int) -> None:
        """Record afresh, until ``count`` more events have been handled."""
        with self._lock:
            self._received.clear()
            self._count = count
            self._done.clear()

    @contextlib.asynccontextmanager
    async def serving(self, settings: Settings) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Database]]:
        """The app with this subscriber, and a database handle of its own to write with."""
        from litestar.testing import AsyncTestClient

        from apprun.app import create_app

        app = create_app(settings, subscribers=[self.registry], configure_logs=False)
        db = create_database(settings)
        async with AsyncTestClient(app=app) as client:
            await db.open()
            try:
                yield client, db
            finally:
                await db.close()

    async def wait(self) -> None:
        """Until every event has been handled, or `WAIT_S` seconds (the figures then say how many were)."""
        try:
            await asyncio.to_thread(self._done.wait, WAIT_S)
        finally:
            self._done.set()  # a wait cut short must not leave its thread blocked: asyncio.run joins it

    def figures(self, elapsed: float) -> dict[str, float]:
        """Events handled per second over ``elapsed`` seconds, the lag (event time to handler) P50 and P99."""
        with self._lock:
            received = list(self._received)
        lags = sorted(
            (at - dt.datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp()) * 1000 for at, sent in received
        )
        return {
            "delivered_per_s": len(received) / elapsed,
            "lag_p50_ms": statistics.median(lags) if lags else 0.0,
            "lag_p99_ms": lags[max(int(len(lags) * 0.99) - 1, 0)] if lags else 0.0,
            "delivered": float(len(received)),
        }


#: Records per second of the steady run (the issue's "lag P99 < 500 ms at a steady 1,000 events/s"),
#: and records per bulk POST in it (one every 20 ms).
EVENTS_RATE = 1000
_STEADY_BULK = 20


async def _records_to_subscriber(settings: Settings, count: int, steady_seconds: float) -> dict[str, float]:
    """Records created through the data API (bulk POSTs of 100) and their events handled by a subscriber;
    then, with ``steady_seconds`` > 0, records created at a steady `EVENTS_RATE` per second for that long,
    and the lag of their events (``steady_*`` figures)."""
    steady = int(EVENTS_RATE * steady_seconds) // _STEADY_BULK * _STEADY_BULK
    subscriber = Subscriber("apprun.record.created", count)
    async with subscriber.serving(settings) as (client, db):
        admin = {"email": "admin@example.com", "password": "admin-password-1234"}
        user = (await client.post("/auth/register", json=admin)).json()["user"]
        async with db.transaction() as conn:
            await conn.execute("UPDATE apprun_users SET is_platform_admin = $1 WHERE id = $2", True, user["id"])
        token = (await client.post("/auth/login", json=admin)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}", "Prefer": "return=minimal"}
        fields = [{"name": n, "type": t} for n, t in (("title", "text"), ("body", "text"), ("views", "integer"))]
        fields.append({"name": "published", "type": "boolean"})
        reply = await client.post("/api/v1/collections", json={"name": "bench_events", "fields": fields}, headers=auth)
        assert reply.status_code == 201, reply.text
        start = time.perf_counter()
        for offset in range(0, count, 100):
            rows = [record(i) for i in range(offset, min(offset + 100, count))]
            reply = await client.post("/data/bench_events", json=rows, headers=auth)
            assert reply.status_code == 201, reply.text
        created = time.perf_counter() - start
        await subscriber.wait()
        elapsed = time.perf_counter() - start
        result = {"created_per_s": count / created, **subscriber.figures(elapsed)}
        if steady:
            subscriber.restart(steady)
            start = time.perf_counter()
            interval = _STEADY_BULK / EVENTS_RATE
            for n, offset in enumerate(range(count, count + steady, _STEADY_BULK)):
                # On schedule: a POST every `interval`; late ones go at once, so the rate is kept on average.
                await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
                rows = [record(i) for i in range(offset, offset + _STEADY_BULK)]
                reply = await client.post("/data/bench_events", json=rows, headers=auth)
                assert reply.status_code == 201, reply.text
            sent = time.perf_counter() - start
            await subscriber.wait()
            figures = subscriber.figures(time.perf_counter() - start)
            result |= {
                "steady_rate": steady / sent,
                "steady_lag_p50_ms": figures["lag_p50_ms"],
                "steady_lag_p99_ms": figures["lag_p99_ms"],
                "steady_delivered": figures["delivered"],
                "steady_sent": float(steady),
            }
    return result


def events(workdir: Path, nats_url: str, count: int, steady_seconds: float = 0.0) -> dict[str, Any]:
    """Records created through the data API, their events through the outbox, the relay and JetStream to
    a subscriber (SQLite), against raw JetStream publishes of the same number of messages; then the lag
    at a steady `EVENTS_RATE` per second for ``steady_seconds``."""

    async def run() -> dict[str, Any]:
        raw = await raw_publish(nats_url, count, 600)  # about the size of one record's event
        settings = Settings(
            _env_file=None,
            apprun_data_dir=workdir / "data",
            database_url=f"sqlite:///{workdir / 'events.db'}",
            pubsub_backend="nats",
            pubsub_nats_url=nats_url,
            log_level="WARNING",
            auth_rate_limit_ip="100000/60",
        )
        result = await _records_to_subscriber(settings, count, steady_seconds)
        return {"raw_publish_per_s": raw, **result}

    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run())
