"""Serving workers load neither SQLAlchemy nor Alembic: ``apprun serve`` checks the schema before they start.

The parent checks (or migrates) the schema with Alembic in a child process and
leaves what it found in the environment (``kernel/db/revision.py``); a worker
compares the version table's rows with one plain query. These tests run a
worker's start in a fresh interpreter (the test process itself has imported
both) and look at its ``sys.modules``; and they check that a schema that moved
since the check is still refused, or migrated, exactly as without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from apprun.kernel.db import create_database, revision
from apprun.kernel.runtime import BootError, migrate_or_check, preflight
from apprun.modules import MIGRATIONS, Settings
from tests.support.live import LiveServer
from tests.support.pg_databases import PgDatabases

ROOT = Path(__file__).resolve().parents[2]

#: What a granian worker does: build the app (apprun.app:asgi), run its start, answer a request.
_WORKER = """
import asyncio, json, sys
from litestar.testing import AsyncTestClient
from apprun.app import asgi

async def main():
    async with AsyncTestClient(app=asgi()) as client:
        info = (await client.get("/api/v1/system/info")).json()
    loaded = sorted(name for name in ("sqlalchemy", "alembic") if name in sys.modules)
    print(json.dumps({"loaded": loaded, "revision": info["database"]["schema_revision"]}))

asyncio.run(main())
"""

#: What ``apprun serve`` does before starting its workers (here in-process: the child does the same).
_PREFLIGHT = """
import asyncio, os
from apprun.kernel.db.revision import ENV
from apprun.kernel.runtime import preflight
from apprun.modules import MIGRATIONS, load_settings

asyncio.run(preflight(load_settings(), MIGRATIONS))
print(os.environ[ENV])
"""


def _env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "JWT_"))}
    return {
        **clean,
        "PYTHONPATH": str(ROOT / "src"),
        "APPRUN_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "MAIL_BACKEND": "none",
        **extra,
    }


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=90, check=False
    )


def test_a_worker_after_the_check_loads_neither_sqlalchemy_nor_alembic(tmp_path: Path, database_url: str) -> None:
    env = _env(tmp_path, database_url)
    checked = _python(_PREFLIGHT, env)
    assert checked.returncode == 0, checked.stderr
    worker = _python(_WORKER, {**env, revision.ENV: checked.stdout.splitlines()[-1]})
    assert worker.returncode == 0, worker.stderr
    found = json.loads(worker.stdout.splitlines()[-1])
    assert found["loaded"] == []
    # The same revision Alembic reads: a worker on its own (no check before it) takes the full path.
    alone = _python(_WORKER, env)
    assert alone.returncode == 0, alone.stderr
    full = json.loads(alone.stdout.splitlines()[-1])
    assert full["loaded"] == ["alembic", "sqlalchemy"]
    assert found["revision"] == full["revision"]


def test_a_served_worker_maps_no_sqlalchemy(tmp_path: Path) -> None:
    """The real thing: ``apprun serve`` with two workers; SQLAlchemy's compiled parts mapped in no process."""
    with LiveServer(tmp_path, workers=2) as server:
        for _ in range(4):
            assert httpx.get(server.url + "/api/v1/system/info").status_code == 200
        assert server.proc is not None
        root = psutil.Process(server.proc.pid)
        processes = [root, *root.children(recursive=True)]
        assert len(processes) >= 3  # granian's main process and two workers
        for proc in processes:
            mapped = sorted(m.path for m in proc.memory_maps() if "sqlalchemy" in m.path)
            assert not mapped, (proc.pid, mapped[:3])


@pytest.fixture
def remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `preflight` leaves in the environment is this test's only (removed after it)."""
    monkeypatch.setenv(revision.ENV, "")


async def _preflight(settings: Settings, then: str | None = None) -> None:
    """Check the schema as ``apprun serve`` does; then (``then``) change it behind the workers' back."""
    await preflight(settings, MIGRATIONS)
    assert os.environ.get(revision.ENV)
    if then is None:
        return
    db = create_database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            await conn.execute(then)
    finally:
        await db.close()


async def _worker_start(settings: Settings) -> revision.MigrationState:
    """What a worker's runtime does with the schema at start."""
    db = create_database(settings)
    await db.open()
    try:
        return await migrate_or_check(settings, MIGRATIONS, db)
    finally:
        await db.close()


@pytest.mark.usefixtures("remembered")
async def test_the_remembered_state_is_the_one_alembic_computes(settings: Settings) -> None:
    from apprun.kernel.db.migrate import migration_state

    await _preflight(settings)
    known = await _worker_start(settings)
    assert known.up_to_date
    assert known == await migration_state(settings.database, MIGRATIONS)


@pytest.mark.usefixtures("remembered")
async def test_a_schema_changed_since_the_check_is_refused_with_the_same_message(settings: Settings) -> None:
    await _preflight(settings, then="DELETE FROM apprun_schema_version WHERE version_num LIKE 'data_%'")
    prod = settings.model_copy(update={"apprun_env": "prod", "apprun_auto_migrate": False})
    with pytest.raises(BootError, match=r"needs .*: run `apprun migrate` \(or set APPRUN_AUTO_MIGRATE=true\)"):
        await _worker_start(prod)


@pytest.mark.usefixtures("remembered")
async def test_another_database_than_the_checked_one_is_migrated(
    settings: Settings, make_settings: Callable[..., Settings], tmp_path: Path, pg_databases: PgDatabases
) -> None:
    await _preflight(settings)
    if settings.database.dialect == "sqlite":
        other_url = f"sqlite:///{tmp_path / 'other' / 'apprun.db'}"
    else:
        other_url = await pg_databases.create()
    other = make_settings(database_url=other_url)
    assert other.database.describe() != settings.database.describe()
    state = await _worker_start(other)  # dev: auto-migrate, on the full path (no version table there yet)
    assert state.up_to_date


def test_a_changed_revision_file_or_module_list_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, remembered: None
) -> None:
    state = revision.MigrationState(current=("kernel_0001",), heads=("kernel_0001",), up_to_date=True)
    revision.remember(["kernel_0001"], state, MIGRATIONS)
    assert revision.state_for(["kernel_0001"], MIGRATIONS) == state
    assert revision.state_for(["kernel_0001", "x"], MIGRATIONS) is None
    assert revision.state_for(["kernel_0001"], MIGRATIONS[:-1]) is None
    monkeypatch.setattr(revision, "fingerprint", lambda _: "another")
    assert revision.state_for(["kernel_0001"], MIGRATIONS) is None


@pytest.mark.usefixtures("remembered")
def test_a_schema_not_at_heads_is_not_remembered() -> None:
    revision.remember([], revision.MigrationState(current=(), heads=("kernel_0001",), up_to_date=False), MIGRATIONS)
    assert not os.environ[revision.ENV]
