"""The SQLite adapter's connection: statements on the loop within a budget or on the thread pool.

`SQLiteDatabase` (``sqlite.py``) hands these out: read-only ones from its
pool, and its one writer. This module holds what a single connection does:
translating ``$n`` parameters, running a statement on the loop or on a
thread under the statement timeout, translating SQLite's errors, savepoints
and ``on_commit`` callbacks. See ``sqlite.py`` for the design.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import regex

from apprun.kernel.db.marks import TxMarks
from apprun.kernel.db.port import FULL_TEXT_REFUSED, Dialect, Row
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

if TYPE_CHECKING:
    from apprun.kernel.db.sqlite import SQLiteDatabase

__all__ = [
    "SQLiteConnection",
    "TransactionLost",
    "regexp",
    "run_callbacks",
    "settle",
    "to_sqlite_params",
    "to_the_end",
    "translate",
]


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


# Matches a $n parameter, or a quoted string/identifier to skip.
_PARAM = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")|\$(\d+)""")


@functools.lru_cache(maxsize=2048)
def to_sqlite_params(sql: str) -> str:
    """Rewrite ``$1`` placeholders to SQLite's ``?1`` (quoted text is left alone)."""
    if "$" not in sql:
        return sql
    return _PARAM.sub(lambda m: m.group(1) or f"?{m.group(2)}", sql)


_UNAVAILABLE_MARKERS = ("unable to open", "disk i/o error", "no such file")


def translate(exc: sqlite3.Error) -> Exception | None:
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


def regexp(pattern: str | None, value: Any) -> int | None:
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


async def settle(statement: Awaitable[T]) -> tuple[T | None, BaseException | None, bool]:
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


async def to_the_end(statement: Awaitable[T]) -> T:
    """`settle` for a caller with nothing to do in between: the statement's error, or the cancellation, is raised."""
    result, error, cancelled = await settle(statement)
    if cancelled:
        raise asyncio.CancelledError
    if error is not None:
        raise error
    return cast(T, result)


class TransactionLost(DatabaseUnavailable):
    """SQLite rolled the whole transaction back under a savepoint (an interrupted statement)."""


def run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the commit stands; a failing hook must not undo the reply
            _log.exception("on_commit_failed")


class SQLiteConnection:
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
                translated = translate(exc)
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

    async def execute_at_commit(self, sql: str, *args: Any) -> None:
        await self.execute(sql, *args)  # in process: nothing to save by waiting

    async def notify(self, channel: str) -> None:  # noqa: ARG002 - the Connection protocol's signature
        return None  # nobody listens on SQLite

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
        marks = TxMarks(callbacks, self.tx_state)
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
            marks.restore()
            raise
        await self.execute(f"RELEASE SAVEPOINT {name}")

    def close(self) -> None:
        self._raw.close()
