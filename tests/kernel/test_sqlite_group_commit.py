"""Group commit: concurrent SQLite transactions of one worker share one BEGIN IMMEDIATE ... COMMIT.

To make transactions meet, a first one (the holder) keeps the writer inside
its body until the test lets it go, while the others queue for the writer;
the tests wait for the queue to fill (``_queued``), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.db import Connection, create_database
from apprun.kernel.db.sqlite import SQLiteDatabase
from apprun.kernel.errors import DatabaseUnavailable, StatementTimeout, UniqueViolation
from tests.support.polling import eventually

Body = Callable[[Connection], Awaitable[None]]


async def _open(make_settings: Any, path: Path, **overrides: Any) -> SQLiteDatabase:
    # A group stays open as long as members keep coming: a loaded machine must not close it early.
    overrides.setdefault("db_sqlite_group_max_ms", 600_000.0)
    settings = make_settings(database_url=f"sqlite:///{path}", db_sqlite_busy_timeout=60.0, **overrides)
    database = create_database(settings)
    assert isinstance(database, SQLiteDatabase)
    await database.open()
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    return database


@pytest.fixture
async def db(make_settings: Any, tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = await _open(make_settings, tmp_path / "g.db")
    try:
        yield database
    finally:
        await database.close()


def _insert(i: int) -> Body:
    async def body(conn: Connection) -> None:
        await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", i, f"n{i}")

    return body


class Holder:
    """A transaction that keeps the writer until `release`, so that others queue behind it."""

    def __init__(self, db: SQLiteDatabase, body: Body, *, fail: bool = False) -> None:
        self.db = db
        self.go = asyncio.Event()
        self.inside = asyncio.Event()
        self.task = asyncio.create_task(self._run(body, fail))

    async def _run(self, body: Body, fail: bool) -> None:
        async with self.db.transaction() as conn:
            await body(conn)
            self.inside.set()
            await self.go.wait()
            if fail:
                raise RuntimeError("the holder fails")

    async def queue(self, *bodies: Body) -> list[asyncio.Task[None]]:
        """Start a transaction per body; return once they all wait for the writer."""
        await asyncio.wait_for(self.inside.wait(), 20)
        before = self.db._queued
        tasks = [asyncio.create_task(_transaction(self.db, body)) for body in bodies]

        async def queued() -> bool:
            return self.db._queued == before + len(bodies)

        await eventually(queued, f"{len(bodies)} transactions to queue for the writer")
        return tasks


async def _transaction(db: SQLiteDatabase, body: Body) -> None:
    async with db.transaction() as conn:
        await body(conn)


async def _ids(db: SQLiteDatabase) -> list[int]:
    async with db.read() as conn:
        return [row["id"] for row in await conn.fetch("SELECT id FROM t ORDER BY id")]


@pytest.mark.parametrize("inline_ms", [5.0, 0.0], ids=["on-the-loop", "on-threads"])
async def test_members_commit_together_then_their_callbacks_run(
    make_settings: Any, tmp_path: Path, inline_ms: float
) -> None:
    db = await _open(make_settings, tmp_path / "g.db", db_sqlite_inline_ms=inline_ms)
    seen: list[str] = []

    def member(i: int) -> Body:
        async def body(conn: Connection) -> None:
            await _insert(i)(conn)
            conn.on_commit(lambda: seen.append(f"committed {i}: {_visible(db.path, i)}"))

        return body

    async def acknowledged(i: int) -> None:
        await _transaction(db, member(i))
        seen.append(f"acknowledged {i}: {_visible(db.path, i)}")

    try:
        commits, members = db.commits, db.committed_members
        holder = Holder(db, member(1))
        await asyncio.wait_for(holder.inside.wait(), 20)
        tasks = [asyncio.create_task(acknowledged(i)) for i in (2, 3, 4)]

        async def queued() -> bool:
            return db._queued == 3

        await eventually(queued, "three transactions to queue for the writer")
        holder.go.set()
        await asyncio.wait_for(asyncio.gather(holder.task, *tasks), 20)

        assert (db.commits - commits, db.committed_members - members) == (1, 4)
        # Every callback once, after the COMMIT; no member was let go before its row was durable.
        assert sorted(seen[:4]) == [f"committed {i}: True" for i in (1, 2, 3, 4)]
        assert sorted(seen[4:]) == [f"acknowledged {i}: True" for i in (2, 3, 4)]
        assert await _ids(db) == [1, 2, 3, 4]
    finally:
        await db.close()


def _visible(path: Path, i: int) -> bool:
    """Whether another connection (another process, to SQLite) sees row ``i``."""
    other = sqlite3.connect(path)
    try:
        return other.execute("SELECT count(*) FROM t WHERE id = ?", (i,)).fetchone()[0] == 1
    finally:
        other.close()


async def test_a_failing_member_fails_alone(db: SQLiteDatabase) -> None:
    async def fails_after_writing(conn: Connection) -> None:
        await conn.execute("INSERT INTO t (id, name) VALUES (3, 'x')")
        raise RuntimeError("member 3 fails")

    async def duplicate(conn: Connection) -> None:
        await conn.execute("INSERT INTO t (id, name) VALUES (5, 'x')")
        await conn.execute("INSERT INTO t (id, name) VALUES (1, 'again')")

    commits = db.commits
    holder = Holder(db, _insert(1))
    tasks = await holder.queue(_insert(2), fails_after_writing, _insert(4), duplicate, _insert(6))
    holder.go.set()
    results = await asyncio.wait_for(asyncio.gather(holder.task, *tasks, return_exceptions=True), 20)

    assert results[0] is None and results[1] is None and results[3] is None and results[5] is None
    assert isinstance(results[2], RuntimeError)
    assert isinstance(results[4], UniqueViolation)
    assert await _ids(db) == [1, 2, 4, 6]
    assert db.commits - commits == 1


async def test_the_first_member_failing_leaves_the_others_to_a_new_transaction(db: SQLiteDatabase) -> None:
    holder = Holder(db, _insert(1), fail=True)
    tasks = await holder.queue(_insert(2), _insert(3))
    holder.go.set()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(holder.task, 20)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert await _ids(db) == [2, 3]


async def test_an_error_that_rolls_everything_back_fails_the_whole_group(make_settings: Any, tmp_path: Path) -> None:
    # A statement interrupted by the statement timeout makes SQLite roll back the whole transaction.
    db = await _open(make_settings, tmp_path / "g.db", db_statement_timeout=0.3)

    async def runaway(conn: Connection) -> None:
        await conn.execute("INSERT INTO t (id, name) VALUES (3, 'x')")
        await conn.execute(
            "INSERT INTO t (id) WITH RECURSIVE c(x) AS (SELECT 100 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
        )

    try:
        holder = Holder(db, _insert(1))
        tasks = await holder.queue(_insert(2), runaway)
        holder.go.set()
        results = await asyncio.wait_for(asyncio.gather(holder.task, *tasks, return_exceptions=True), 20)

        for innocent in (results[0], results[1]):
            assert isinstance(innocent, DatabaseUnavailable)
            assert innocent.code == "db.busy"
        assert isinstance(results[2], StatementTimeout)
        assert await _ids(db) == []
        # The writer is clean: outside any transaction, and the next one commits on its own.
        assert db._writer is not None and not db._writer._raw.in_transaction
        await _transaction(db, _insert(7))
        assert await _ids(db) == [7]
    finally:
        await db.close()


async def test_a_member_cancelled_while_waiting_for_the_commit_still_commits(db: SQLiteDatabase) -> None:
    """Decided: a member whose body has finished has its writes in the shared transaction; cancelling
    it stops its wait, not the commit (its writes and its callbacks stand)."""
    called: list[int] = []
    go = asyncio.Event()

    async def remembered(conn: Connection) -> None:
        await _insert(2)(conn)
        conn.on_commit(lambda: called.append(2))

    async def last(conn: Connection) -> None:
        await _insert(3)(conn)
        await go.wait()

    members = db.committed_members
    holder = Holder(db, _insert(1))
    member, closing = await holder.queue(remembered, last)
    holder.go.set()

    async def member_waits_for_the_commit() -> bool:
        return db.committed_members == members and db._group is not None and db._group.members == 2

    await eventually(member_waits_for_the_commit, "the second member to wait for the group's commit")
    member.cancel()
    with pytest.raises(asyncio.CancelledError):
        await member
    go.set()
    await asyncio.wait_for(asyncio.gather(holder.task, closing), 20)
    assert await _ids(db) == [1, 2, 3]
    assert called == [2]
    await _transaction(db, _insert(4))  # nothing leaked: the writer is free
    assert await _ids(db) == [1, 2, 3, 4]


async def test_a_member_cancelled_as_the_writer_is_handed_to_it(db: SQLiteDatabase) -> None:
    # The holder finishes, sees a member queued, and hands the writer over; the member is cancelled before
    # it runs. The group must still commit (the holder waits for it) and the writer be free afterwards.
    holder = Holder(db, _insert(1))
    (member,) = await holder.queue(_insert(2))
    holder.go.set()
    await asyncio.sleep(0)  # the holder runs its turn's end next: it hands the writer to the member
    member.cancel()
    with pytest.raises(asyncio.CancelledError):
        await member
    await asyncio.wait_for(holder.task, 20)
    assert await _ids(db) == [1]
    await _transaction(db, _insert(3))
    assert await _ids(db) == [1, 3]
    assert not db._busy


async def test_a_member_cancelled_while_queued_is_not_written(db: SQLiteDatabase) -> None:
    holder = Holder(db, _insert(1))
    cancelled, kept = await holder.queue(_insert(2), _insert(3))
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    holder.go.set()
    await asyncio.wait_for(asyncio.gather(holder.task, kept), 20)
    assert await _ids(db) == [1, 3]


async def test_savepoints_inside_a_member(db: SQLiteDatabase) -> None:
    async def nested(conn: Connection) -> None:
        await conn.execute("SAVEPOINT apprun_upsert")
        await conn.execute("INSERT INTO t (id, name) VALUES (2, 'undone')")
        await conn.execute("ROLLBACK TO SAVEPOINT apprun_upsert")
        await conn.execute("RELEASE SAVEPOINT apprun_upsert")
        await conn.execute("SAVEPOINT apprun_upsert")
        await conn.execute("INSERT INTO t (id, name) VALUES (3, 'kept')")
        await conn.execute("RELEASE SAVEPOINT apprun_upsert")

    holder = Holder(db, _insert(1))
    (member,) = await holder.queue(nested)
    holder.go.set()
    await asyncio.wait_for(asyncio.gather(holder.task, member), 20)
    assert await _ids(db) == [1, 3]


@pytest.mark.parametrize(("setting", "value"), [("db_sqlite_group_commit", False), ("db_sqlite_group_max", 2)])
async def test_group_commit_off_or_capped(make_settings: Any, tmp_path: Path, setting: str, value: Any) -> None:
    db = await _open(make_settings, tmp_path / "g.db", **{setting: value})
    try:
        commits = db.commits
        holder = Holder(db, _insert(1))
        tasks = await holder.queue(*(_insert(i) for i in (2, 3, 4)))
        holder.go.set()
        await asyncio.wait_for(asyncio.gather(holder.task, *tasks), 20)
        assert await _ids(db) == [1, 2, 3, 4]
        # Off: one COMMIT per transaction, as before group commit; capped at 2: two groups of two.
        assert db.commits - commits == (4 if value is False else 2)
        assert db._writer is not None and not db._writer._raw.in_transaction
    finally:
        await db.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from apprun.kernel.db.sqlite import SQLiteDatabase

    async def main(path, first, count):
        db = SQLiteDatabase(Path(path), busy_timeout=60.0, group_max_wait=600.0)
        await db.open()
        committed = []

        async def one(i):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t (id, name) VALUES ($1, $2)", i, "p")
                conn.on_commit(lambda: committed.append(i))

        await asyncio.gather(*(one(first + i) for i in range(count)))
        print(json.dumps({"committed": len(committed), "members": db.committed_members, "commits": db.commits}))
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def test_two_processes_group_commit_into_one_file(db: SQLiteDatabase) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}

    def run_both() -> list[str]:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(db.path), str(first), "300"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for first in (1000, 2000)
        ]
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outs.append(out)
        return outs

    import json

    for out in await asyncio.to_thread(run_both):
        report = json.loads(out)
        assert report["committed"] == report["members"] == 300
        assert 1 <= report["commits"] <= 300
    ids = await _ids(db)
    assert ids == [*range(1000, 1300), *range(2000, 2300)]


async def test_a_transaction_cancelled_while_its_begin_waits_on_a_thread(make_settings: Any, tmp_path: Path) -> None:
    # With statements on threads, BEGIN IMMEDIATE waits there for another process's lock; the task is
    # cancelled meanwhile, and the BEGIN goes through once the lock is free. Nobody owns that transaction.
    db = await _open(make_settings, tmp_path / "g.db", db_sqlite_inline_ms=0)
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(_transaction(db, _insert(1)))

        async def writer_taken() -> bool:
            return db._busy

        await eventually(writer_taken, "the transaction to take the writer")
        await asyncio.sleep(0)  # one more turn of the loop: BEGIN has gone to a thread
        task.cancel()
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
        await _transaction(db, _insert(2))
        assert await _ids(db) == [2]
    finally:
        other.close()
        await db.close()
