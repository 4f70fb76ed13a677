"""Fixtures for the events tests: a NATS server, an app with the test subscribers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.kernel.config import Settings
from apprun.kernel.db import Database, create_database
from apprun.kernel.db.migrate import upgrade
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
    await upgrade(settings.database)
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
