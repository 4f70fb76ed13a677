"""The database port, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.db import Database, create_database
from apprun.kernel.db.postgres import NestedCheckout
from apprun.kernel.db.sqlite import to_sqlite_params
from apprun.kernel.errors import DatabaseUnavailable, StatementTimeout
from apprun.modules import Settings


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = create_database(settings)
    await database.open()
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, at TIMESTAMP)")
    yield database
    await database.close()


def test_param_rewrite_leaves_quoted_text_alone() -> None:
    assert to_sqlite_params("SELECT $1, $12") == "SELECT ?1, ?12"
    assert to_sqlite_params("SELECT '$1', \"$2\", $3") == "SELECT '$1', \"$2\", ?3"
    assert to_sqlite_params("SELECT 'it''s $1', $1") == "SELECT 'it''s $1', ?1"
    assert to_sqlite_params("SELECT 1") == "SELECT 1"


async def test_fetch_fetchrow_fetchval(db: Database) -> None:
    async with db.transaction() as conn:
        assert await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 1, "one") == 1
        await conn.executemany("INSERT INTO t (id, name) VALUES ($1, $2)", [(2, "two"), (3, "three")])
    async with db.read() as conn:
        rows = await conn.fetch("SELECT id, name FROM t WHERE id >= $1 ORDER BY id", 2)
        assert [(r["id"], r["name"]) for r in rows] == [(2, "two"), (3, "three")]
        row = await conn.fetchrow("SELECT name FROM t WHERE id = $1", 1)
        assert row is not None and row["name"] == "one"
        assert await conn.fetchrow("SELECT name FROM t WHERE id = $1", 99) is None
        assert await conn.fetchval("SELECT count(*) FROM t") == 3
        # The same parameter used twice.
        assert await conn.fetchval("SELECT count(*) FROM t WHERE id = $1 OR id = $1 + 1", 1) == 2


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 10, "ten")
            raise RuntimeError("halfway")
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t WHERE id = 10") == 0
    # The writer is usable again afterwards.
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 10, "ten")
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t WHERE id = 10") == 1


async def test_datetimes_round_trip_as_utc(db: Database) -> None:
    at = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id, name, at) VALUES ($1, $2, $3)", 5, "x", at.replace(tzinfo=None))
    async with db.read() as conn:
        value = await conn.fetchval("SELECT at FROM t WHERE id = 5")
    assert str(value).startswith("2026-11-23")


async def test_concurrent_reads_and_writes(db: Database) -> None:
    async def write(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 100 + i, f"n{i}")

    async def read() -> int:
        async with db.read() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM t"))

    await asyncio.gather(*(write(i) for i in range(20)), *(read() for _ in range(20)))
    assert await read() == 20
    stats = db.pool_stats()
    assert stats.size <= stats.max
    assert stats.waiting == 0


async def test_sqlite_read_connections_cannot_write(make_settings: Any, tmp_path: Path) -> None:
    database = create_database(make_settings(database_url=f"sqlite:///{tmp_path / 'ro.db'}"))
    await database.open()
    try:
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE t (id INTEGER)")
        async with database.read() as conn:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await conn.execute("INSERT INTO t (id) VALUES (1)")
    finally:
        await database.close()


@pytest.mark.checklist(30)
async def test_statement_timeout_cancels_a_runaway_query(make_settings: Any, database_url: str) -> None:
    settings = make_settings(database_url=database_url, db_statement_timeout=0.3)
    database = create_database(settings)
    await database.open()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(StatementTimeout):
            async with database.read() as conn:
                if database.dialect == "postgres":
                    await conn.execute("SELECT pg_sleep(10)")
                else:
                    await conn.fetchval(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
                    )
        assert loop.time() - start < 5
        # The connection that was cancelled is healthy for the next query.
        async with database.read() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await database.close()


@pytest.mark.checklist(30)
async def test_unreachable_postgres_fails_fast_with_db_unavailable(make_settings: Any) -> None:
    from apprun.testing.engines import free_port

    settings = make_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x", db_pool_timeout=2, db_connect_timeout=1
    )
    database = create_database(settings)
    await database.open()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(DatabaseUnavailable) as info:
            await database.ping()
        assert info.value.status == 503
        assert info.value.code == "db.unavailable"
        assert loop.time() - start < 2
    finally:
        await database.close()


async def test_unwritable_sqlite_location_is_db_unavailable(make_settings: Any, tmp_path: object) -> None:
    settings = make_settings(database_url="sqlite:////proc/no-such-dir/x.db")
    database = create_database(settings)
    with pytest.raises(DatabaseUnavailable):
        await database.open()
        await database.ping()
    await database.close()


async def test_full_pool_is_pool_exhausted_not_unavailable(make_settings: Any, database_url: str) -> None:
    database = create_database(make_settings(database_url=database_url, db_pool_size=1, db_pool_timeout=0.3))
    await database.open()
    try:

        async def another_request() -> None:
            if database.dialect == "postgres":
                async with database.read() as conn:
                    await conn.fetchval("SELECT 1")
            else:  # SQLite: the single writer is the contended resource
                async with database.transaction() as conn:
                    await conn.fetchval("SELECT 1")

        async with database.transaction() as held:
            await held.fetchval("SELECT 1")
            with pytest.raises(DatabaseUnavailable) as info:
                await asyncio.create_task(another_request())
        assert info.value.code == "db.pool_exhausted"
    finally:
        await database.close()


async def test_a_nested_postgres_checkout_is_refused_in_strict_mode_and_logged_otherwise(
    make_settings: Any, pg_databases: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # PostgreSQL only: SQLite reads use their own connections beside the writer.
    database_url = await pg_databases.create()
    strict = create_database(make_settings(database_url=database_url, db_strict_checkout=True))
    lenient = create_database(make_settings(database_url=database_url, db_strict_checkout=False))
    await strict.open()
    await lenient.open()
    try:
        async with strict.transaction():
            with pytest.raises(NestedCheckout, match="already holds a pooled connection"):
                async with strict.read():
                    pass

            async def independent() -> int:
                async with strict.read() as conn:
                    return int(await conn.fetchval("SELECT 7"))

            # A task started while the connection is held is another holder, not a nesting.
            assert await asyncio.create_task(independent()) == 7
        async with strict.read() as conn:  # released: a new checkout is fine
            assert await conn.fetchval("SELECT 1") == 1

        async with lenient.transaction(), lenient.read() as conn:
            assert await conn.fetchval("SELECT 2") == 2
        assert "db_nested_checkout" in capsys.readouterr().out
    finally:
        await strict.close()
        await lenient.close()


async def test_a_postgres_deadlock_victim_is_told_to_retry_not_a_500(make_settings: Any, pg_databases: Any) -> None:
    """Two transactions that lock two rows in opposite orders: PostgreSQL aborts one (40P01).

    The victim did nothing wrong and may simply retry, as with SQLite's busy
    writer: 503 ``db.busy`` with ``Retry-After``, never an internal error.
    """
    database = create_database(make_settings(database_url=await pg_databases.create()))
    await database.open()
    try:
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            await conn.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
        first_locked, second_locked = asyncio.Event(), asyncio.Event()

        async def lock(mine: int, other: int, locked: asyncio.Event, wait_for: asyncio.Event) -> None:
            async with database.transaction() as conn:
                await conn.execute("UPDATE pair SET n = n + 1 WHERE id = $1", mine)
                locked.set()
                await wait_for.wait()
                await conn.execute("UPDATE pair SET n = n + 1 WHERE id = $1", other)

        results = await asyncio.gather(
            lock(1, 2, first_locked, second_locked), lock(2, 1, second_locked, first_locked), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1, results
        assert isinstance(failures[0], DatabaseUnavailable), repr(failures[0])
        assert failures[0].code == "db.busy"
        assert failures[0].headers == {"Retry-After": "1"}
    finally:
        await database.close()


async def test_a_released_postgres_connection_keeps_nothing_of_its_last_use(
    make_settings: Any, pg_databases: Any
) -> None:
    """Connections go back to the pool without a reset query; transaction-local state is all there is."""
    database = create_database(make_settings(database_url=await pg_databases.create(), db_pool_size=1))
    await database.open()
    try:
        async with database.transaction() as conn:
            await conn.fetchval("SELECT set_config('apprun.tenant_id', 'tenant-a', true)")
            await conn.execute("CREATE TABLE kept (id INTEGER)")
        async with database.read() as conn:  # a raw transaction left open by its user
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO kept VALUES (1)")
        async with database.read() as conn:  # the pool's one connection again
            assert await conn.fetchval("SELECT current_setting('apprun.tenant_id', true)") in ("", None)
            assert await conn.fetchval("SELECT count(*) FROM kept") == 0
            assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "15s"
    finally:
        await database.close()


async def test_on_commit_runs_after_commit_and_never_on_rollback(db: Database) -> None:
    seen: list[str] = []
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 50, "x")
        conn.on_commit(lambda: seen.append("committed"))
        assert seen == []  # not before the commit
    assert seen == ["committed"]
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            conn.on_commit(lambda: seen.append("rolled back"))
            raise RuntimeError("halfway")
    assert seen == ["committed"]
    async with db.read() as conn:  # outside a transaction: at once
        conn.on_commit(lambda: seen.append("now"))
    assert seen == ["committed", "now"]


async def test_a_savepoint_rolls_back_only_its_block(db: Database) -> None:
    from apprun.kernel.errors import UniqueViolation

    seen: list[str] = []
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 60, "before")
        conn.tx_state["outer"] = True
        with pytest.raises(UniqueViolation):
            async with conn.savepoint():
                await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 61, "undone")
                conn.on_commit(lambda: seen.append("undone"))
                conn.tx_state["inner"] = True
                # A failed statement: on PostgreSQL it aborts the transaction, up to the savepoint.
                await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 60, "clash")
        assert conn.tx_state == {"outer": True}
        async with conn.savepoint():  # savepoints nest; a block that ends normally is kept
            await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 62, "kept")
            with pytest.raises(RuntimeError):
                async with conn.savepoint():
                    await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 63, "inner undone")
                    raise RuntimeError("inner")
            conn.on_commit(lambda: seen.append("kept"))
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 64, "after")
    assert seen == ["kept"]
    async with db.read() as conn:
        rows = await conn.fetch("SELECT id, name FROM t WHERE id >= 60 ORDER BY id")
        assert [(r["id"], r["name"]) for r in rows] == [(60, "before"), (62, "kept"), (64, "after")]
        with pytest.raises(RuntimeError):
            async with conn.savepoint():  # a read has no transaction to save a point in
                pass


async def test_a_failing_commit_hook_does_not_undo_the_commit(db: Database) -> None:
    def boom() -> None:
        raise ValueError("hook")

    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", 51, "kept")
        conn.on_commit(boom)
    async with db.read() as conn:
        assert await conn.fetchval("SELECT name FROM t WHERE id = 51") == "kept"


async def test_sqlite_reads_run_on_the_loop_and_slow_ones_move_to_a_thread(make_settings: Any, tmp_path: Path) -> None:
    import threading

    from apprun.kernel.db.sqlite import SQLiteDatabase

    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'inline.db'}", db_sqlite_inline_ms=1)
    database = create_database(settings)
    assert isinstance(database, SQLiteDatabase)
    await database.open()
    try:
        loop_thread = threading.get_ident()
        async with database.read() as conn:
            conn._raw.create_function("whoami", 0, threading.get_ident)  # type: ignore[attr-defined]
            # A quick read answers on the loop's own thread.
            assert await conn.fetchval("SELECT whoami()") == loop_thread
            assert database.inline_overruns == 0
            # A read past the budget is interrupted and run again, whole, on a thread.
            row = await conn.fetchrow(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
                "SELECT max(x), whoami() FROM c"
            )
            assert row is not None
            assert row[0] == 2_000_000
            assert row[1] != loop_thread
            assert database.inline_overruns == 1
        # Inside a write transaction (which holds the only write lock) statements run on the loop too.
        async with database.transaction() as conn:
            conn._raw.create_function("whoami", 0, threading.get_ident)  # type: ignore[attr-defined]
            assert await conn.fetchval("SELECT whoami()") == loop_thread
    finally:
        await database.close()


async def test_a_transaction_cancelled_while_it_begins_leaves_the_writer_clean(db: Database) -> None:
    """BEGIN runs on a thread (SQLite): a task cancelled meanwhile must not leave it open for the next one.

    It did: the next transaction failed with "cannot start a transaction within
    a transaction", and another process would have waited on the write lock.
    """

    async def write(value: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t (id, name) VALUES ($1, 'x')", value)

    for i in range(50):
        task = asyncio.create_task(write(1000 + i))
        for _ in range(i % 4):  # cancel at different points: waiting for the lock, in BEGIN, after
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await write(i)  # raised OperationalError before the fix
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t WHERE id < 1000") == 50


@pytest.mark.checklist(30)
async def test_sqlite_runaway_write_statement_times_out_and_rolls_back(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'runaway.db'}", db_statement_timeout=0.3)
    database = create_database(settings)
    await database.open()
    try:
        async with database.transaction() as conn:
            await conn.execute("CREATE TABLE n (x INTEGER)")
        with pytest.raises(StatementTimeout):
            async with database.transaction() as conn:
                await conn.execute("INSERT INTO n (x) VALUES (1)")
                await conn.execute(
                    "INSERT INTO n (x) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
                )
        async with database.read() as conn:
            assert await conn.fetchval("SELECT count(*) FROM n") == 0
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO n (x) VALUES (2)")
        async with database.read() as conn:
            assert await conn.fetchval("SELECT count(*) FROM n") == 1
    finally:
        await database.close()


async def test_sqlite_inline_reads_can_be_switched_off(make_settings: Any, tmp_path: Path) -> None:
    import threading

    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'threads.db'}", db_sqlite_inline_ms=0)
    database = create_database(settings)
    await database.open()
    try:
        async with database.read() as conn:
            conn._raw.create_function("whoami", 0, threading.get_ident)  # type: ignore[attr-defined]
            assert await conn.fetchval("SELECT whoami()") != threading.get_ident()
    finally:
        await database.close()
