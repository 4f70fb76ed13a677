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
from apprun.kernel.errors import StatementTimeout


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
