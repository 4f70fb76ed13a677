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
import datetime
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import regex

from apprun.kernel.db.port import FULL_TEXT_REFUSED, Connection, Dialect, PoolStats, Row
from apprun.kernel.errors import (
    DatabaseUnavailable,
    ForeignKeyViolation,
    InvalidValue,
    NotNullViolation,
    StatementTimeout,
    UniqueViolation,
)
from apprun.kernel.logging import get_logger
from apprun.kernel.tracing import db_span

__all__ = ["SQLiteDatabase", "to_sqlite_params"]


def _adapt_datetime(value: datetime.datetime) -> str:
    # Aware values are stored in UTC with a fixed width, so text comparison in
    # SQL (expires_at > $1) orders them correctly; naive ones are taken as UTC.
    value = value.astimezone(datetime.UTC) if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
    return value.isoformat(timespec="microseconds")


# Explicit adapters (the stdlib's defaults are deprecated since 3.12).
sqlite3.register_adapter(datetime.datetime, _adapt_datetime)
sqlite3.register_adapter(datetime.date, lambda v: v.isoformat())

T = TypeVar("T")
_log = get_logger("apprun.db")

#: COMMITs (of groups) between two passive checkpoints of the WAL (SQLite's own default is every 1,000 pages).
CHECKPOINT_EVERY = 500
#: The first and the longest sleep between two tries of ``BEGIN IMMEDIATE`` while another process writes.
_BEGIN_FIRST_WAIT = 0.0002
_BEGIN_LONGEST_WAIT = 0.005

# Matches a $n parameter, or a quoted string/identifier to skip.
_PARAM = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|\$(\d+)""")


@functools.lru_cache(maxsize=2048)
def to_sqlite_params(sql: str) -> str:
    """Rewrite ``$1`` placeholders to SQLite's ``?1`` (quoted text is left alone)."""
    if "$" not in sql:
        return sql
    return _PARAM.sub(lambda m: m.group(1) or f"?{m.group(2)}", sql)


_UNAVAILABLE_MARKERS = ("unable to open", "disk i/o error", "no such file")


def _translate(exc: sqlite3.Error) -> Exception | None:
    message = str(exc).lower()
    if isinstance(exc, sqlite3.IntegrityError):
        if message.startswith("unique constraint failed"):
            return UniqueViolation(str(exc).split(":", 1)[-1].strip())
        if message.startswith("foreign key constraint failed"):
            return ForeignKeyViolation()
        if message.startswith("not null constraint failed"):
            return NotNullViolation(str(exc).split(":", 1)[-1].strip().split(".")[-1])
    if message.startswith("apprun_regexp:"):
        return InvalidValue(details={"reason": str(exc).split(":", 1)[1].strip()})
    if message.startswith("user-defined function raised exception"):
        # Python's sqlite3 replaces a function's own message; apprun's only function is the regexp one.
        return InvalidValue(details={"reason": "the regular expression is not valid or took too long"})
    if message.startswith("fts5:"):  # a full-text query FTS5 cannot parse
        return InvalidValue(details={"reason": FULL_TEXT_REFUSED})
    if isinstance(exc, sqlite3.OperationalError):
        if message == "interrupted":
            return StatementTimeout()
        if "database is locked" in message or "database table is locked" in message:
            return DatabaseUnavailable(code="db.busy")
        if any(marker in message for marker in _UNAVAILABLE_MARKERS):
            return DatabaseUnavailable()
    return None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _regexp(pattern: str | None, value: Any) -> int | None:
    """SQLite has no regular expressions: PostgREST's ``match`` filters use this.

    The ``regex`` module is used for its timeout: a pattern that backtracks
    catastrophically fails the query (400) instead of holding a thread.
    """
    if pattern is None or value is None:
        return None
    try:
        return 1 if _compiled(pattern).search(str(value), timeout=0.2) else 0
    except TimeoutError:
        raise sqlite3.OperationalError("apprun_regexp: the pattern took too long") from None
    except regex.error:
        raise sqlite3.OperationalError("apprun_regexp: invalid pattern") from None


async def _settle(statement: Awaitable[T]) -> tuple[T | None, BaseException | None, bool]:
    """Await ``statement`` until it has finished, even if this task is cancelled meanwhile.

    A statement handed to a thread runs to its end whatever happens to the
    task that awaits it. If the task stopped waiting (a cancellation), the
    writer would be handed on while BEGIN or COMMIT still runs, and the next
    holder would find the connection inside a transaction nobody owns
    ("cannot start a transaction within a transaction"). So the wait goes on.
    Returns ``(result, error, cancelled)``: what the statement gave, and whether
    the task was cancelled while it ran (the caller raises that once it has
    dealt with the outcome).
    """
    task = asyncio.ensure_future(statement)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})  # never cancels the statement, never raises its error
        except asyncio.CancelledError:
            cancelled = True
    if task.cancelled():
        return None, asyncio.CancelledError(), cancelled
    return (None, task.exception(), cancelled) if task.exception() is not None else (task.result(), None, cancelled)


async def _to_the_end(statement: Awaitable[T]) -> T:
    """`_settle` for a caller with nothing to do in between: the statement's error, or the cancellation, is raised."""
    result, error, cancelled = await _settle(statement)
    if cancelled:
        raise asyncio.CancelledError
    if error is not None:
        raise error
    return cast(T, result)


class TransactionLost(DatabaseUnavailable):
    """SQLite rolled the whole transaction back under a savepoint (an interrupted statement)."""


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the commit stands; a failing hook must not undo the reply
            _log.exception("on_commit_failed")


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


class _SQLiteConnection:
    """One sqlite3 connection; every call runs on the adapter's thread pool."""

    dialect: Dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, db: SQLiteDatabase, *, readonly: bool = False) -> None:
        self._raw = raw
        self._db = db
        self._inline = readonly and db.inline_budget > 0
        #: True while this (writer) connection is inside a transaction that holds the write lock.
        self._holds_lock = False
        self._deadline = 0.0
        self._after_commit: list[Callable[[], None]] | None = None
        self.tx_state: dict[str, Any] = {}
        #: Savepoints opened so far (their names are numbered).
        self._savepoints = 0
        raw.set_progress_handler(self._check_deadline, 10_000)

    def _check_deadline(self) -> int:
        return 1 if self._deadline and time.monotonic() > self._deadline else 0

    async def _run(self, sql: str, fn: Callable[[str], T]) -> T:
        text = to_sqlite_params(sql)

        def call() -> T:
            self._deadline = time.monotonic() + self._db.statement_timeout
            try:
                return fn(text)
            finally:
                self._deadline = 0.0

        with db_span("sqlite", sql):
            try:
                if self._inline:
                    done, result = self._on_loop(text, fn)
                    if done:
                        return cast(T, result)
                    self._db.inline_overruns += 1
                elif self._holds_lock:
                    return call()
                return await asyncio.get_running_loop().run_in_executor(self._db.executor, call)
            except RuntimeError as exc:  # the pool is shut down: apprun is stopping
                raise DatabaseUnavailable() from exc
            except sqlite3.Error as exc:
                translated = _translate(exc)
                if translated is not None:
                    raise translated from exc
                raise

    def _on_loop(self, text: str, fn: Callable[[str], T]) -> tuple[bool, T | None]:
        """Run a read right here within the budget: ``(True, result)``, or ``(False, None)`` if it overran."""
        self._deadline = time.monotonic() + self._db.inline_budget
        try:
            return True, fn(text)
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                return False, None
            raise
        finally:
            self._deadline = 0.0

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._run(sql, lambda text: self._raw.execute(text, args).rowcount)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        rows = list(args)
        await self._run(sql, lambda text: self._raw.executemany(text, rows))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._run(sql, lambda text: self._raw.execute(text, args).fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._run(sql, lambda text: self._raw.execute(text, args).fetchone())
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    def on_commit(self, callback: Callable[[], None]) -> None:
        if self._after_commit is None:
            callback()
        else:
            self._after_commit.append(callback)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        callbacks = self._after_commit
        if callbacks is None:
            raise RuntimeError("a savepoint needs a transaction")
        self._savepoints += 1
        name = f"apprun_sp{self._savepoints}"
        kept, state = len(callbacks), dict(self.tx_state)
        await self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as exc:
            if not self._raw.in_transaction:
                # An interrupted statement (statement timeout) rolled the whole transaction back: the
                # caller must not go on as if only the block were undone (it would write in autocommit).
                raise TransactionLost() from exc
            await self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            await self.execute(f"RELEASE SAVEPOINT {name}")
            del callbacks[kept:]
            self.tx_state.clear()
            self.tx_state.update(state)
            raise
        await self.execute(f"RELEASE SAVEPOINT {name}")

    def close(self) -> None:
        self._raw.close()


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
        self._idle: asyncio.LifoQueue[_SQLiteConnection] = asyncio.LifoQueue()
        self._readers: list[_SQLiteConnection] = []
        self._writer: _SQLiteConnection | None = None
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
        raw.create_function("apprun_regexp", 2, _regexp, deterministic=True)
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

    async def _new(self, *, readonly: bool) -> _SQLiteConnection:
        loop = asyncio.get_running_loop()
        try:
            raw = await loop.run_in_executor(self.executor, functools.partial(self._connect, readonly=readonly))
        except (sqlite3.Error, RuntimeError) as exc:
            raise DatabaseUnavailable() from exc
        return _SQLiteConnection(raw, self, readonly=readonly)

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

    async def _acquire_reader(self) -> _SQLiteConnection:
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
                        await _to_the_end(conn.execute("BEGIN IMMEDIATE"))
                except BaseException:
                    # A BEGIN that went through on its thread while this task was cancelled: the next
                    # turn must find the connection outside a transaction.
                    if conn._raw.in_transaction:
                        await _to_the_end(conn.execute("ROLLBACK"))
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

    async def _statement(self, conn: _SQLiteConnection, sql: str) -> None:
        """One statement of the transaction's own bookkeeping (savepoints, ROLLBACK), run to its end."""
        await (conn.execute(sql) if conn._holds_lock else _to_the_end(conn.execute(sql)))

    async def _undo(self, conn: _SQLiteConnection, group: _Group, savepoint: bool, cause: BaseException) -> None:
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
                await _to_the_end(conn.execute("ROLLBACK"))
        finally:
            self._fail(group, cause)

    def _fail(self, group: _Group, cause: BaseException) -> None:
        """Nothing of ``group`` committed: its members waiting for the commit get 503 ``db.busy``."""
        group.error = cause
        group.done.set_result(None)

    async def _commit(self, conn: _SQLiteConnection, group: _Group) -> None:
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
            _, error, cancelled = await _settle(conn.execute("COMMIT"))
        if error is not None:
            try:
                if conn._raw.in_transaction:
                    await _to_the_end(conn.execute("ROLLBACK"))
            finally:
                self._fail(group, error)
            raise error
        group.done.set_result(None)
        self.commits += 1
        self.committed_members += group.members
        if self.inline_budget > 0:
            self._committed()
        _run_callbacks(group.callbacks)
        if cancelled:
            raise asyncio.CancelledError

    async def _begin(self, conn: _SQLiteConnection) -> None:
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
                    translated = _translate(exc)
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
