"""SQLite writes without thread hand-offs: BEGIN retried on the loop, COMMIT on the loop, checkpoints off it.

Another process holding the write lock is played by a second sqlite3
connection in the test, which is what a second granian worker is to SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.db import create_database
from apprun.kernel.db.sqlite import SQLiteDatabase
from apprun.kernel.errors import DatabaseUnavailable
from tests.support.polling import eventually


@pytest.fixture
async def sqlite_db(make_settings: Any, tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    # A long busy timeout: the tests release the lock themselves, and a loaded machine must not time them out.
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'w.db'}", db_sqlite_busy_timeout=60.0)
    database = create_database(settings)
    assert isinstance(database, SQLiteDatabase)
    await database.open()
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    try:
        yield database
    finally:
        await database.close()


def _other_process(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


async def test_begin_and_commit_run_on_the_loop(sqlite_db: SQLiteDatabase) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    async with sqlite_db.transaction() as conn:
        conn._raw.create_function("whoami", 0, lambda: seen.append(threading.get_ident()) or 1)  # type: ignore[attr-defined]
        await conn.execute("INSERT INTO t (id, name) VALUES (1, 'x')")
        await conn.fetchval("SELECT whoami()")
    assert seen == [loop_thread]
    async with sqlite_db.read() as conn:
        assert await conn.fetchval("SELECT name FROM t WHERE id = 1") == "x"
    # No auto-checkpoint on the writer: a commit never checkpoints (fsync) on the loop.
    async with sqlite_db.transaction() as conn:
        assert await conn.fetchval("PRAGMA wal_autocheckpoint") == 0


async def test_a_writer_waits_for_another_process_without_blocking_the_loop(sqlite_db: SQLiteDatabase) -> None:
    other = _other_process(sqlite_db.path)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (id, name) VALUES (10, 'other')")

    async def write() -> None:
        async with sqlite_db.transaction() as conn:
            await conn.execute("INSERT INTO t (id, name) VALUES (11, 'ours')")

    task = asyncio.create_task(write())

    # It tried, found the lock taken, and sleeps on the loop: the loop still serves reads meanwhile.
    async def retrying() -> bool:
        return sqlite_db.begin_waits >= 2

    await eventually(retrying, "the writer to find the lock taken and try again")
    async with sqlite_db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t") == 0
    assert not task.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 10)
    async with sqlite_db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t") == 2


async def test_a_lock_held_past_the_busy_timeout_is_db_busy(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'busy.db'}", db_sqlite_busy_timeout=0.2)
    database = create_database(settings)
    await database.open()
    other = _other_process(tmp_path / "busy.db")
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable) as raised:
            async with database.transaction() as conn:
                await conn.execute("SELECT 1")
        assert raised.value.code == "db.busy"
        other.execute("ROLLBACK")
        # The writer is clean for the next transaction.
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE n (x INTEGER)")
    finally:
        other.close()
        await database.close()


async def test_the_wal_is_checkpointed_off_the_loop(sqlite_db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from apprun.kernel.db import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_EVERY", 3)
    before = sqlite_db.checkpoints
    for i in range(3):
        async with sqlite_db.transaction() as conn:
            await conn.execute("INSERT INTO t (id, name) VALUES ($1, 'x')", 100 + i)

    async def checkpointed() -> bool:
        return sqlite_db.checkpoints > before

    await eventually(checkpointed, "a checkpoint after the third commit")
    # Everything in the log has been copied into the database file.
    other = _other_process(sqlite_db.path)
    try:
        busy, log, checkpointed = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0
        assert log == checkpointed
    finally:
        other.close()


async def test_with_inline_statements_off_begin_and_commit_go_to_threads(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'threads.db'}", db_sqlite_inline_ms=0)
    database = create_database(settings)
    assert isinstance(database, SQLiteDatabase)
    await database.open()
    try:
        async with database.transaction() as conn:
            assert await conn.fetchval("PRAGMA wal_autocheckpoint") == 1000  # SQLite checkpoints itself
            await conn.execute("CREATE TABLE n (x INTEGER)")
        assert database.checkpoints == 0
    finally:
        await database.close()
