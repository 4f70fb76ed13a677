"""SQLite adapter: the stdlib driver on a small thread pool.

SQLite allows many readers and one writer. Like PocketBase, apprun keeps two
pools: up to ``pool_size`` read-only connections used concurrently, and one
writer connection that serialises transactions inside the process
(``BEGIN IMMEDIATE``, so a transaction never upgrades its lock half-way and
deadlocks). Across processes (several granian workers) WAL mode and the busy
timeout arbitrate. A progress handler enforces the statement timeout.

Reads run *on the event loop* first, with a small budget
(``DB_SQLITE_INLINE_MS``, 5 ms by default): a typical read takes tens of
microseconds, far less than handing it to a thread and waking the loop when
it is done (measured: 1.8 times the requests/s on a 20-row list). The progress
handler interrupts a read that overruns the budget, and the read is run
again on the thread pool under the full statement timeout, so a slow query
delays the loop by the budget at most. Interrupting a read loses nothing: a
read-only statement has nothing to undo.

Writes never wait on a thread. ``BEGIN IMMEDIATE`` is tried on the loop
without waiting (the writer's busy timeout is 0); while another process
holds the lock it is tried again after short, growing sleeps (0.2 ms to
5 ms, on the loop) until ``DB_SQLITE_BUSY_TIMEOUT``. Once the transaction
holds the database's only write lock, its statements cannot wait on anyone,
so they run on the loop too, and so does ``COMMIT``: in WAL mode a commit
appends to the log without an fsync (``synchronous = NORMAL``). What could
make a commit slow, checkpointing the log into the database file (with an
fsync), is taken off the writer (``wal_autocheckpoint = 0``) and done by a
passive checkpoint on the thread pool every `CHECKPOINT_EVERY` commits
(measured: a create with its outbox event went from four thread hand-offs
to none). A long write statement (a mass update) therefore holds the
worker's loop while it runs, under the statement timeout;
``DB_SQLITE_INLINE_MS=0`` sends every statement, BEGIN and COMMIT to a
thread, and leaves checkpoints to SQLite.

Group commit. The writer is taken in turns, in arrival order; a turn runs
one ``transaction()`` body. The first turn opens a SQLite transaction (BEGIN
IMMEDIATE) for a *group*; when its body ends and other transactions wait for
the writer, it leaves the transaction open and hands the writer on, and the
next body runs inside it in a ``SAVEPOINT apprun_member`` of its own. The turn
that ends with nobody waiting (or with the group at ``DB_SQLITE_GROUP_MAX``
members, or open for ``DB_SQLITE_GROUP_MAX_MS``) COMMITs for all, then runs
every member's ``on_commit`` callbacks; each member's ``async with`` is left
only after that COMMIT. A failed member is rolled back to its savepoint (the
first member, having none, rolls back the transaction, which holds only its
writes). If SQLite itself rolled the whole transaction back (an interrupt, a
full disk), or COMMIT failed, the members waiting are told ``db.busy``. A
member cancelled while it waits for the commit still has its writes
committed; a turn handed to a task that no longer wants it is handed on, and
a group left with nobody to commit it is committed by a task of its own. The
gain is between processes: a worker that waited for the lock commits, in one
go, every write that queued meanwhile. ``CHECKPOINT_EVERY`` counts COMMITs.
``DB_SQLITE_GROUP_COMMIT=false`` makes every group one member long.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from apprun.kernel.db.port import Connection, Dialect, PoolStats
from apprun.kernel.db.sqlite_conn import (
    SQLiteConnection,
    regexp,
    run_callbacks,
    settle,
    to_sqlite_params,
    to_the_end,
    translate,
)
from apprun.kernel.errors import (
    DatabaseUnavailable,
)
from apprun.kernel.logging import get_logger

__all__ = ["SQLiteDatabase", "to_sqlite_params"]

_log = get_logger("apprun.db")

#: COMMITs (of groups) between two passive checkpoints of the WAL (SQLite's own default is every 1,000 pages).
CHECKPOINT_EVERY = 500
#: The first and the longest sleep between two tries of ``BEGIN IMMEDIATE`` while another process writes.
_BEGIN_FIRST_WAIT = 0.0002
_BEGIN_LONGEST_WAIT = 0.005


class _Group:
    """Transactions of one worker sharing one SQLite transaction, and so one COMMIT."""

    __slots__ = ("callbacks", "done", "error", "members", "opened")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Members whose writes are in the transaction, and their ``on_commit`` callbacks in order.
        self.members = 0
        self.callbacks: list[Callable[[], None]] = []
        #: Set once the transaction has committed or been rolled back (then ``error`` says why).
        self.done: asyncio.Future[None] = loop.create_future()
        self.error: BaseException | None = None
        self.opened = time.monotonic()


class SQLiteDatabase:
    """A pool of SQLite connections to one database file."""

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        pool_size: int = 10,
        pool_timeout: float = 5.0,
        busy_timeout: float = 5.0,
        statement_timeout: float = 15.0,
        inline_budget: float = 0.005,
        group_commit: bool = True,
        group_max_members: int = 64,
        group_max_wait: float = 0.01,
    ) -> None:
        self.path = path
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.busy_timeout = busy_timeout
        self.statement_timeout = statement_timeout
        #: Seconds a read may run on the event loop before it moves to a thread (0: always a thread).
        self.inline_budget = inline_budget
        #: Reads that overran the budget and were run again on a thread (for tests and metrics).
        self.inline_overruns = 0
        self.executor = ThreadPoolExecutor(max_workers=pool_size + 1, thread_name_prefix="apprun-sqlite")
        self._idle: asyncio.LifoQueue[SQLiteConnection] = asyncio.LifoQueue()
        self._readers: list[SQLiteConnection] = []
        self._writer: SQLiteConnection | None = None
        #: Group commit: the writer's turn (held by one transaction at a time, handed on in arrival
        #: order), the transactions waiting for it, and the group whose SQLite transaction is open.
        self.group_max_members = group_max_members if group_commit else 1
        self.group_max_wait = group_max_wait
        self._busy = False
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()
        self._queued = 0
        self._group: _Group | None = None
        self._closer: asyncio.Task[None] | None = None
        self._grow_lock = asyncio.Lock()
        self._waiting = 0
        self._closed = False
        #: Tries of BEGIN IMMEDIATE that found another process writing, and checkpoints done (for tests).
        self.begin_waits = 0
        self.checkpoints = 0
        #: COMMITs done, and the transactions (members) they committed (for tests and benchmarks).
        self.commits = 0
        self.committed_members = 0
        #: Commits since the last checkpoint, and the checkpoint under way (on the pool), if any.
        self._commits = 0
        self._checkpointing: asyncio.Future[None] | None = None

    def describe(self) -> str:
        return f"SQLite at {self.path}"

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        raw = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN IMMEDIATE
            check_same_thread=False,  # used from the pool's threads, one at a time
            cached_statements=256,
        )
        raw.row_factory = sqlite3.Row
        raw.create_function("apprun_regexp", 2, regexp, deterministic=True)
        raw.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        raw.execute("PRAGMA foreign_keys = ON")
        if readonly:
            raw.execute("PRAGMA query_only = ON")
        else:
            raw.execute("PRAGMA journal_mode = WAL")
            raw.execute("PRAGMA synchronous = NORMAL")
            if self.inline_budget > 0:
                # BEGIN IMMEDIATE is retried on the loop (`_begin`), and the WAL is checkpointed
                # off the loop (`_checkpoint`): no statement of the writer may wait or fsync.
                raw.execute("PRAGMA busy_timeout = 0")
                raw.execute("PRAGMA wal_autocheckpoint = 0")
        return raw

    async def _new(self, *, readonly: bool) -> SQLiteConnection:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self.executor, functools.partial(self._connect, readonly=readonly))
        except (sqlite3.Error, RuntimeError) as exc:
            raise DatabaseUnavailable() from exc
        return SQLiteConnection(raw, self, readonly=readonly)

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable() from exc
        self._writer = await self._new(readonly=False)

    async def close(self) -> None:
        self._closed = True
        if self._group is not None:  # members waiting for a commit that will not come
            group, self._group = self._group, None
            self._fail(group, DatabaseUnavailable())
        conns = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers.clear()
        self._writer = None
        # A cancelled task's statement may still be running on a pool thread:
        # let the threads finish before closing the connections under them
        # (closing a connection in use crashes the interpreter).
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
        for conn in conns:
            conn.close()

    async def _acquire_reader(self) -> SQLiteConnection:
        if self._closed:
            raise DatabaseUnavailable()
        try:
            return self._idle.get_nowait()
        except asyncio.QueueEmpty:
            pass
        async with self._grow_lock:
            if len(self._readers) < self.pool_size:
                conn = await self._new(readonly=True)
                self._readers.append(conn)
                return conn
        self._waiting += 1
        try:
            # asyncio.timeout, not wait_for: a connection handed over just as the
            # timeout fires must not be dropped (nor a cancellation swallowed).
            async with asyncio.timeout(self.pool_timeout):
                return await self._idle.get()
        except TimeoutError:
            raise DatabaseUnavailable(code="db.pool_exhausted") from None
        finally:
            self._waiting -= 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        conn = await self._acquire_reader()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    @asynccontextmanager
    async def transaction(self, local: Mapping[str, str] | None = None) -> AsyncIterator[Connection]:
        """One member of a group commit (see the module's docstring): its own savepoint in the
        worker's open SQLite transaction, or ``BEGIN IMMEDIATE`` if none is open; it leaves once
        the transaction holding its writes has committed."""
        if local:
            raise ValueError("SQLite has no transaction-local settings")
        if self._writer is None:
            raise DatabaseUnavailable()
        await self._take_turn()
        conn = self._writer
        inline = self.inline_budget > 0
        callbacks: list[Callable[[], None]] = []
        group = self._group
        deferred = False
        try:
            if group is None:
                try:
                    if inline:
                        await self._begin(conn)
                    else:  # taking the lock may wait for another process (busy timeout): on a thread
                        await to_the_end(conn.execute("BEGIN IMMEDIATE"))
                except BaseException:
                    # A BEGIN that went through on its thread while this task was cancelled: the next
                    # turn must find the connection outside a transaction.
                    if conn._raw.in_transaction:
                        await to_the_end(conn.execute("ROLLBACK"))
                    raise
                group = self._group = _Group(asyncio.get_running_loop())
                savepoint = False  # the first member's failure rolls back the whole transaction: its own
            else:
                savepoint = True
            # Holding the only write lock, statements cannot wait on anyone: they run on the loop.
            conn._holds_lock = inline
            if savepoint:
                await self._statement(conn, "SAVEPOINT apprun_member")
            conn._after_commit = callbacks
            conn.tx_state = {}
            try:
                yield conn
                conn._after_commit = None
                if savepoint:
                    await self._statement(conn, "RELEASE apprun_member")
            except BaseException as exc:
                conn._after_commit = None
                await self._undo(conn, group, savepoint, exc)
                raise
            group.members += 1
            group.callbacks += callbacks
            deferred = self._queued > 0 and self._group_is_open(group)
            if not deferred:
                await self._commit(conn, group)
        finally:
            conn._after_commit = None
            conn._holds_lock = False
            self._pass_turn()
        if deferred:
            # Its writes are in the group's transaction: a cancellation here stops the wait, not the commit.
            await asyncio.shield(group.done)
            if group.error is not None:
                raise DatabaseUnavailable(code="db.busy") from group.error

    def _group_is_open(self, group: _Group) -> bool:
        """Whether the group may take one more member (it commits otherwise)."""
        return group.members < self.group_max_members and time.monotonic() - group.opened < self.group_max_wait

    async def _take_turn(self) -> None:
        """Wait until the writer is free for this transaction's statements (in arrival order)."""
        if not self._busy:
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        self._queued += 1
        self._waiting += 1
        try:
            async with asyncio.timeout(self.pool_timeout):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._pass_turn()  # handed over just as this task gave up: hand it on
            else:
                turn.cancel()
                self._queued -= 1
            if isinstance(exc, TimeoutError):
                raise DatabaseUnavailable(code="db.pool_exhausted") from None
            raise
        finally:
            self._waiting -= 1

    def _pass_turn(self) -> None:
        """Hand the writer to the next transaction waiting; if none is, commit a group left open."""
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                self._queued -= 1
                turn.set_result(None)
                return
        group = self._group
        if group is None:
            self._busy = False
        elif self._closed:
            self._group = None
            self._fail(group, DatabaseUnavailable())
            self._busy = False
        else:
            # The member that would have joined gave up (cancelled, timed out): members wait for this commit.
            self._closer = asyncio.get_running_loop().create_task(self._commit_left_open(group))

    async def _commit_left_open(self, group: _Group) -> None:
        try:
            assert self._writer is not None  # noqa: S101 - a group is only open while the writer is
            await self._commit(self._writer, group)
        except Exception:  # noqa: BLE001 - the members waiting are told (db.busy); nobody else to tell
            _log.warning("sqlite_group_commit_failed", exc_info=True)
        finally:
            self._closer = None
            self._pass_turn()

    async def _statement(self, conn: SQLiteConnection, sql: str) -> None:
        """One statement of the transaction's own bookkeeping (savepoints, ROLLBACK), run to its end."""
        await (conn.execute(sql) if conn._holds_lock else to_the_end(conn.execute(sql)))

    async def _undo(self, conn: SQLiteConnection, group: _Group, savepoint: bool, cause: BaseException) -> None:
        """Undo a failed member: back to its savepoint, or, for the group's first member, the whole transaction.

        An error may have rolled the whole transaction back already (SQLite does on an interrupt,
        a full disk or an I/O error): then every member waiting for the group's commit fails too.
        """
        if savepoint and conn._raw.in_transaction:
            try:
                await self._statement(conn, "ROLLBACK TO apprun_member")
                await self._statement(conn, "RELEASE apprun_member")
                return
            except Exception as exc:  # noqa: BLE001 - undone below with the whole group
                cause = exc
        self._group = None
        try:
            if conn._raw.in_transaction:
                await to_the_end(conn.execute("ROLLBACK"))
        finally:
            self._fail(group, cause)

    def _fail(self, group: _Group, cause: BaseException) -> None:
        """Nothing of ``group`` committed: its members waiting for the commit get 503 ``db.busy``."""
        group.error = cause
        group.done.set_result(None)

    async def _commit(self, conn: SQLiteConnection, group: _Group) -> None:
        """COMMIT ``group``'s transaction, let its members go, and run their ``on_commit`` callbacks."""
        self._group = None
        # WAL, synchronous=NORMAL and no auto-checkpoint: COMMIT appends to the log, no fsync.
        if conn._holds_lock:
            try:
                await conn.execute("COMMIT")
                error: BaseException | None = None
            except Exception as exc:  # noqa: BLE001 - raised below, once the members are told
                error = exc
            cancelled = False
        else:
            _, error, cancelled = await settle(conn.execute("COMMIT"))
        if error is not None:
            try:
                if conn._raw.in_transaction:
                    await to_the_end(conn.execute("ROLLBACK"))
            finally:
                self._fail(group, error)
            raise error
        group.done.set_result(None)
        self.commits += 1
        self.committed_members += group.members
        if self.inline_budget > 0:
            self._committed()
        run_callbacks(group.callbacks)
        if cancelled:
            raise asyncio.CancelledError

    async def _begin(self, conn: SQLiteConnection) -> None:
        """``BEGIN IMMEDIATE`` on the loop: tried without waiting, again after short sleeps while
        another process holds the write lock, until the busy timeout (then 503 ``db.busy``)."""
        deadline = time.monotonic() + self.busy_timeout
        wait = _BEGIN_FIRST_WAIT
        while True:
            try:
                conn._raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + wait > deadline:
                    translated = translate(exc)
                    if translated is not None:
                        raise translated from exc
                    raise
            self.begin_waits += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, _BEGIN_LONGEST_WAIT)

    def _committed(self) -> None:
        """Count a commit; every `CHECKPOINT_EVERY`, checkpoint the WAL on the pool (one at a time)."""
        self._commits += 1
        if self._commits < CHECKPOINT_EVERY or self._checkpointing is not None or self._closed:
            return
        self._commits = 0
        loop = asyncio.get_running_loop()
        try:
            self._checkpointing = loop.run_in_executor(self.executor, self._checkpoint)
        except RuntimeError:  # the pool is shut down: apprun is stopping
            return
        self._checkpointing.add_done_callback(self._checkpoint_done)

    def _checkpoint(self) -> None:
        """A passive checkpoint, on a connection of its own: it never blocks the writers or readers."""
        raw = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            raw.close()

    def _checkpoint_done(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is None:
            self.checkpoints += 1
        elif not done.cancelled():
            _log.warning("sqlite_checkpoint_failed", error=str(done.exception()))

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self.read() as conn:
            await conn.fetchval("SELECT 1")
        return time.perf_counter() - start

    def pool_stats(self) -> PoolStats:
        readers = len(self._readers)
        return PoolStats(
            size=readers + (1 if self._writer else 0),
            idle=self._idle.qsize() + (0 if self._busy or not self._writer else 1),
            max=self.pool_size + 1,
            waiting=self._waiting,
        )
