"""Shared fixtures (settings, a database per test on SQLite and PostgreSQL, apps) and pytest hooks.

The ``database_url`` fixture is parametrized over both dialects, so any test
that uses it (directly or through ``settings``/``app``/``client``) runs twice. Each test gets
its own SQLite file or its own PostgreSQL database, dropped afterwards.

PostgreSQL is the machine's server (``APPRUN_TEST_PG_DSN``, default
127.0.0.1:5432, trust auth), and so is Redis (``APPRUN_TEST_REDIS``, default
127.0.0.1:6379). `make test` starts them when they are down; if one still is
not reachable the run stops with a message — a missing engine is never a
silent skip.

Helpers live in tests/support/ (`PgDatabases`, `clean_environment` …); only
fixtures and hooks belong here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.kernel.db import Database, create_database
from apprun.modules import Settings
from apprun.testing.engines import SeaweedFS, postgres_admin_dsn, redis_address
from tests.support.environment import clean_environment
from tests.support.pg_databases import PgDatabases

#: A teardown this slow is a shutdown that hung (apprun bounds each stop step by STOP_TIMEOUT).
SLOW_TEARDOWN_S = 10.0
_slow_teardowns: list[tuple[str, float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what a slow teardown printed, to show it at the end even when the test passed."""
    if report.when == "teardown" and report.duration >= SLOW_TEARDOWN_S:
        printed = "\n".join(text for name, text in report.sections if "teardown" in name)
        _slow_teardowns.append((report.nodeid, report.duration, printed))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Slow teardowns, with the end of their output (stop_step_timeout names what hung)."""
    if not _slow_teardowns:
        return
    terminalreporter.section("slow teardowns (a shutdown step hung; see stop_step_timeout)")
    for nodeid, duration, printed in _slow_teardowns:
        terminalreporter.write_line(f"{nodeid}: {duration:.1f} s")
        # Log values carry their newlines escaped (task stacks): unfold them to read.
        for line in printed.replace("\\n", "\n").splitlines()[-120:]:
            terminalreporter.write_line("    " + line[:600])


def pytest_sessionstart(session: pytest.Session) -> None:
    async def probe() -> None:
        conn = await asyncpg.connect(postgres_admin_dsn(), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {postgres_admin_dsn()} ({exc}). "
            "`make test` starts the machine's server; or set APPRUN_TEST_PG_DSN.",
            returncode=3,
        )
    host, port = redis_address()
    try:
        with redis.Redis(host=host, port=port, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except (OSError, redis.RedisError) as exc:
        # The shared rate-limit tests need it; without this check they fail slowly (the limiter fails open).
        pytest.exit(
            f"Redis is not reachable at {host}:{port} ({exc}). "
            "`make test` starts the machine's server; or set APPRUN_TEST_REDIS=host:port.",
            returncode=3,
        )


@pytest.fixture
async def pg_databases() -> AsyncIterator[PgDatabases]:
    dbs = PgDatabases()
    yield dbs
    await dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases) -> str:
    """A fresh, empty database of each dialect, as a ``DATABASE_URL``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'apprun.db'}"
    return await pg_databases.create()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS S3 endpoint per test process, started on first use (~1 s, ~150 MB).

    Shared by the process's tests rather than one per test, as NATS is, because
    it costs ten times as much to start; tests stay hermetic by using a bucket
    of their own (bucket names are global to the endpoint). A missing ``weed``
    fails the test with what to install, like every engine here: never a skip.
    """
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for this test: its own data dir; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "apprun_data_dir": tmp_path / "data",
            "db_boot_wait": 0,
            # A task that holds a PostgreSQL connection and asks for another
            # can deadlock the pool under load: fail the test instead.
            "db_strict_checkout": True,
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def db(settings: Settings, client: Any) -> AsyncIterator[Database]:
    """The test's database, opened in the test's own event loop.

    The in-process client runs the app in a loop of its own (a portal
    thread), and an asyncpg pool belongs to one loop: so tests inspect and
    arrange rows through this separate pool, never through ``app.state``.
    Depends on ``client`` so the schema is migrated first.
    """
    database = create_database(settings)
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    from tests.support.test_app import TEST_ROUTES

    return create_app(settings, extra_routes=TEST_ROUTES, configure_logs=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An in-process client; the app's lifespan (DB pool, migrations) runs around it."""
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; the caller's environment must not leak in."""
    clean_environment(monkeypatch)
