"""Fixtures for the events tests: a NATS server, an app with the test subscribers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.events.nats_bus import STREAM, durable_name
from apprun.kernel.db import Database, create_database
from apprun.kernel.db.migrate import upgrade
from apprun.modules import MIGRATIONS, Settings
from apprun.testing.engines import NatsServer
from tests.support.test_app import TEST_ROUTES, TEST_SUBSCRIBERS

HANDLED_TABLE = "CREATE TABLE test_handled (consumer TEXT NOT NULL, event_id TEXT NOT NULL, attempt INTEGER NOT NULL)"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


async def prepare(settings: Settings) -> Database:
    """Migrate and create the test subscribers' table; returns a test-loop Database."""
    await upgrade(settings.database, MIGRATIONS)
    db = create_database(settings)
    await db.open()
    async with db.transaction() as conn:
        await conn.execute(HANDLED_TABLE)
    return db


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (no timing assertions: a deadline)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def unpublished(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE published_at IS NULL"))


async def consumer_state(nats_url: str, consumer: str) -> tuple[int, int, int]:
    """(delivered, pending, ack-pending) of the subscriber's durable JetStream consumer.

    0 if the consumer does not exist yet (apprun creates it at start).
    """
    nc = await nats.connect(nats_url)
    try:
        try:
            info = await nc.jetstream().consumer_info(STREAM, durable_name(consumer))
        except nats.js.errors.NotFoundError:
            return 0, 0, 0
        return int(info.delivered.consumer_seq or 0), int(info.num_pending or 0), int(info.num_ack_pending or 0)
    finally:
        await nc.close()


async def settled(db: Database, nats_url: str, consumer: str, timeout: float = 60.0) -> None:
    """Wait until no delivery to ``consumer`` can still happen, a duplicate included.

    The outbox has nothing left to publish, and the consumer has nothing left
    to deliver nor any delivery waiting for its ack (which is what a
    redelivery would come from). Only then is "handled exactly once" a fact
    rather than a snapshot.
    """

    async def outbox_empty() -> bool:
        return await unpublished(db) == 0

    async def idle() -> bool:
        _, pending, ack_pending = await consumer_state(nats_url, consumer)
        return pending == 0 and ack_pending == 0

    await eventually(outbox_empty, "the outbox published", timeout=timeout)
    await eventually(idle, f"consumer {consumer} with nothing pending or unacked", timeout=timeout)


@pytest.fixture(params=["memory", "nats"])
def bus_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def events_env(
    make_settings: Callable[..., Settings], database_url: str, bus_backend: str, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """An app with the test subscribers on each bus, plus a test-loop database."""
    nats = None
    overrides: dict[str, Any] = {"database_url": database_url, "pubsub_backend": bus_backend}
    if bus_backend == "nats":
        nats = NatsServer(tmp_path / "nats")
        nats.start()
        overrides["pubsub_nats_url"] = nats.url
    settings = make_settings(**overrides)
    db = await prepare(settings)
    app = create_app(settings, extra_routes=TEST_ROUTES, subscribers=[TEST_SUBSCRIBERS], configure_logs=False)
    try:
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            yield {"client": client, "db": db, "app": app, "settings": settings, "nats": nats}
    finally:
        await db.close()
        if nats is not None:
            nats.stop()
