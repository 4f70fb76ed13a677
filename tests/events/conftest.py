"""Fixtures for the events tests: a NATS server, an app with the test subscribers.

Helpers live in tests/support/: `prepare` (test_app.py), `eventually`
(polling.py), `unpublished` (outbox.py), `consumer_state` and `settled`
(consumers.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.modules import Settings
from apprun.testing.engines import NatsServer
from tests.support.test_app import TEST_ROUTES, TEST_SUBSCRIBERS, prepare


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


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
