"""Transaction-local settings (``Database.transaction(local=...)``): PostgreSQL sends them with BEGIN.

The data API sets its role and tenant this way; RLS reads them. They must be
set for the transaction, gone after it, quoted whatever they hold, and a
failed transaction must roll back as any other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apprun.kernel.db import create_database
from apprun.kernel.errors import StatementTimeout, UniqueViolation


async def test_local_settings_live_for_one_transaction(make_settings: Any, database_url: str) -> None:
    # One connection in the pool, so the next checkout is the same session.
    database = create_database(make_settings(database_url=database_url, db_pool_size=1, db_statement_timeout=1.0))
    await database.open()
    try:
        if database.dialect == "sqlite":
            with pytest.raises(ValueError, match="no transaction-local settings"):
                async with database.transaction({"apprun.test": "x"}):
                    pass
            return
        tricky = "it's; SELECT 1 --"
        async with database.transaction({"apprun.test": tricky, "apprun.other": ""}) as conn:
            assert await conn.fetchval("SELECT current_setting('apprun.test', true)") == tricky
            assert await conn.fetchval("SELECT current_setting('apprun.other', true)") == ""
        async with database.read() as conn:
            assert await conn.fetchval("SELECT current_setting('apprun.test', true)") in (None, "")

        with pytest.raises(RuntimeError):
            async with database.transaction({"apprun.test": "x"}) as conn:
                await conn.execute("CREATE TABLE local_t (x int)")
                raise RuntimeError("undo")
        async with database.read() as conn:
            assert await conn.fetchval("SELECT to_regclass('local_t')") is None

        # A statement cancelled by the timeout: the error is reported, the connection is usable after.
        with pytest.raises(StatementTimeout):
            async with database.transaction({"apprun.test": "x"}) as conn:
                await conn.execute("SELECT pg_sleep(30)")
        async with database.transaction({"apprun.test": "y"}) as conn:
            assert await conn.fetchval("SELECT current_setting('apprun.test', true)") == "y"

        with pytest.raises(ValueError, match="NUL"):
            async with database.transaction({"apprun.test": "a\x00b"}):
                pass
    finally:
        await asyncio.wait_for(database.close(), 10)


async def test_notify_goes_with_the_commit_and_not_with_a_rollback(
    make_settings: Any, pg_databases: Any, tmp_path: Any
) -> None:
    """``conn.notify``: sent with the COMMIT of a transaction with settings; dropped with its savepoint or rollback.

    Notifications arrive in commit order, so one sent after the others marks the end: what has not
    arrived by then was never sent.
    """
    import asyncpg

    url = await pg_databases.create()
    database = create_database(make_settings(database_url=url))
    await database.open()
    listener = await asyncpg.connect(url)
    got: list[str] = []
    end = asyncio.Event()

    def heard(_conn: Any, _pid: int, channel: str, _payload: str) -> None:
        got.append(channel)
        if channel == "apprun_end":
            end.set()

    try:
        for channel in ("apprun_kept", "apprun_dropped", "apprun_end"):
            await listener.add_listener(channel, heard)
        async with database.transaction({"apprun.test": "x"}) as conn:
            await conn.notify("apprun_kept")
            await conn.notify("apprun_kept")  # once per transaction
            with pytest.raises(RuntimeError):
                async with conn.savepoint():
                    await conn.notify("apprun_dropped")
                    raise RuntimeError("undo the savepoint")
        with pytest.raises(RuntimeError):
            async with database.transaction({"apprun.test": "x"}) as conn:
                await conn.notify("apprun_dropped")
                raise RuntimeError("undo the transaction")
        with pytest.raises(ValueError, match="channel"):
            async with database.transaction({"apprun.test": "x"}) as conn:
                await conn.notify("apprun'; DROP TABLE x; --")
        async with database.transaction() as conn:  # no settings: sent at once, delivered at commit
            await conn.notify("apprun_end")
        async with asyncio.timeout(30):
            await end.wait()
        assert got == ["apprun_kept", "apprun_end"]
    finally:
        await listener.close()
        await database.close()


#: Values that must arrive as they were sent, whatever quoting they would need.
TRICKY_TEXTS = [
    "it's; SELECT 1 --",
    "back\\slash \\' and \\\\'' quotes",
    "$1 $2 $$ $tag$ dollar",
    "line\nbreak\ttab",
    "unicode é ☃ 😀",
    '{"json": "with \\"escapes\\" and \\u0000"}',
    "",
]


async def test_execute_at_commit_is_sent_with_the_commit(make_settings: Any, database_url: str) -> None:
    """``conn.execute_at_commit``: PostgreSQL queues it for the COMMIT of a transaction with settings.

    Its values arrive as they were sent (they are quoted as literals there); a failed savepoint or
    transaction drops it; if it fails, nothing of the transaction is committed. Elsewhere it runs at once.
    """
    import datetime as dt

    database = create_database(make_settings(database_url=database_url, db_pool_size=1))
    await database.open()
    postgres = database.dialect == "postgres"
    local = {"apprun.test": "x"} if postgres else None
    insert = "INSERT INTO at_commit_t (k, t, n, b, d) VALUES ($1, $2, $3, $4, $5)"
    when = dt.datetime(2026, 12, 2, 11, 30, 15, 123456, tzinfo=dt.UTC)
    try:
        async with database.transaction() as conn:
            timestamp = "timestamptz" if postgres else "TEXT"
            await conn.execute(
                f"CREATE TABLE at_commit_t (k text PRIMARY KEY, t text, n int, b boolean, d {timestamp})"
            )
        if postgres:  # the quoting must not depend on it (one connection in the pool: the same session below)
            async with database.read() as conn:
                await conn.execute("SET standard_conforming_strings = off")
        async with database.transaction(local) as conn:
            for i, text in enumerate(TRICKY_TEXTS):
                await conn.execute_at_commit(insert, f"k{i}", text, i, i % 2 == 0, when)
            await conn.execute_at_commit(insert, "null", None, None, None, None)
            with pytest.raises(RuntimeError):
                async with conn.savepoint():
                    await conn.execute_at_commit(insert, "dropped", "x", 0, True, when)
                    raise RuntimeError("undo the savepoint")
            # Queued, not yet written (PostgreSQL); written at once elsewhere.
            seen = await conn.fetchval("SELECT count(*) FROM at_commit_t")
            assert seen == (0 if postgres else len(TRICKY_TEXTS) + 1)
        async with database.read() as conn:
            rows = {r["k"]: r for r in await conn.fetch("SELECT k, t, n, b, d FROM at_commit_t")}
        assert [rows[f"k{i}"]["t"] for i in range(len(TRICKY_TEXTS))] == TRICKY_TEXTS
        assert [rows[f"k{i}"]["n"] for i in range(len(TRICKY_TEXTS))] == list(range(len(TRICKY_TEXTS)))
        assert [bool(rows[f"k{i}"]["b"]) for i in range(len(TRICKY_TEXTS))] == [
            i % 2 == 0 for i in range(len(TRICKY_TEXTS))
        ]
        if postgres:
            assert rows["k0"]["d"] == when
        assert [rows["null"][c] for c in ("t", "n", "b", "d")] == [None] * 4
        assert "dropped" not in rows
        if postgres:
            async with database.read() as conn:
                assert await conn.fetchval("SHOW standard_conforming_strings") == "off"
                await conn.execute("RESET standard_conforming_strings")

        with pytest.raises(RuntimeError):
            async with database.transaction(local) as conn:
                await conn.execute_at_commit(insert, "rolled_back", "x", 0, True, when)
                raise RuntimeError("undo the transaction")
        # A queued statement that fails (a duplicate key) fails the commit: the transaction's other write goes too.
        with pytest.raises(UniqueViolation):
            async with database.transaction(local) as conn:
                await conn.execute("INSERT INTO at_commit_t (k) VALUES ($1)", "with_the_failed_commit")
                await conn.execute_at_commit(insert, "k0", "again", 0, True, when)
        async with database.read() as conn:
            keys = {r["k"] for r in await conn.fetch("SELECT k FROM at_commit_t")}
        assert not keys & {"rolled_back", "with_the_failed_commit"}
        # The connection (the only one) is usable after the failed commit.
        async with database.transaction(local) as conn:
            await conn.execute_at_commit(insert, "after", "ok", 1, False, when)
        async with database.read() as conn:
            assert await conn.fetchval("SELECT t FROM at_commit_t WHERE k = $1", "after") == "ok"

        if postgres:
            async with database.transaction(local) as conn:
                with pytest.raises(ValueError, match="no literal"):
                    await conn.execute_at_commit("INSERT INTO at_commit_t (k, t) VALUES ($1, '$2')", "q")
                with pytest.raises(ValueError, match="NUL"):
                    await conn.execute_at_commit(insert, "nul", "a\x00b", 0, True, when)
                with pytest.raises(TypeError, match="no literal"):
                    await conn.execute_at_commit(insert, "float", "x", 1.5, True, when)
    finally:
        await asyncio.wait_for(database.close(), 10)
