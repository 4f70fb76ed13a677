"""Workloads measured inside one Python process: authorization decisions, events end to end."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from apprun.kernel.config import Settings
from apprun.kernel.context import RequestContext
from apprun.kernel.db import create_database
from apprun.kernel.db.migrate import upgrade
from apprun.kernel.db.port import Connection
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.rbac.service import POLICY_VERSION, Rbac

__all__ = ["authorization", "events"]


class _Members:
    """One user holding the built-in ``member`` role in the tenant (as a membership would)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    async def role_assignments(self, conn: Connection, tenant_id: str) -> list[tuple[str, str]]:
        return [(self.user_id, "member")]


async def _authorization(workdir: Path, seconds: float) -> dict[str, float]:
    settings = Settings(_env_file=None, apprun_data_dir=workdir, database_url=f"sqlite:///{workdir / 'authz.db'}")
    await upgrade(settings.database)
    db = create_database(settings)
    await db.open()
    try:
        user, tenant = new_id(), new_id()
        rbac = Rbac(db, [_Members(user)])
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


def events(workdir: Path, nats_url: str, count: int) -> dict[str, Any]:
    """Events through the outbox, the relay and JetStream to a subscriber (SQLite), against raw JetStream."""
    from apprun.events import make_event
    from benchmarks.events_throughput import PAYLOAD, ceiling, through_apprun

    async def run() -> dict[str, Any]:
        size = len(repr(make_event("app.bench.event", tenant_id=str(uuid.uuid4()), data=PAYLOAD).data)) + 300
        raw = await ceiling(nats_url, count, size)
        settings = Settings(
            _env_file=None,
            apprun_data_dir=workdir / "data",
            database_url=f"sqlite:///{workdir / 'events.db'}",
            pubsub_backend="nats",
            pubsub_nats_url=nats_url,
            log_level="WARNING",
        )
        result = await through_apprun(settings, count)
        return {"raw_publish_per_s": raw, **result}

    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run())
