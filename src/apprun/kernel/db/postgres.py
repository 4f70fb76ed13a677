"""PostgreSQL adapter: an asyncpg pool.

Failure handling is the point of this file. When PostgreSQL is unreachable a
request fails fast with `DatabaseUnavailable` (503, ``db.unavailable``)
instead of hanging: connecting is bounded by ``DB_CONNECT_TIMEOUT`` and
checking a connection out by ``DB_POOL_TIMEOUT``. Connections the server
dropped are replaced by asyncpg on the next checkout, so the pool recovers by
itself when PostgreSQL comes back. ``statement_timeout`` is set per
connection, so a runaway query is cancelled by the server.

A task that holds a connection and checks out a second one can deadlock the
pool under load (every connection held, each holder waiting for another).
Such nested checkouts are logged (``db_nested_checkout``, with the call
site), and refused with `NestedCheckout` when ``DB_STRICT_CHECKOUT`` is on,
as it is in the test suite.

apprun keeps no session state on a connection: the role and tenant are set
with ``set_config(..., true)`` and locks are transaction-level. So a
connection goes back to the pool without asyncpg's reset query (``RESET
ALL``, ``UNLISTEN *``, …), which would cost every request one more round
trip; an open transaction is still rolled back. Code given a connection
must use ``SET LOCAL`` and transaction-level advisory locks as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

import asyncpg
import asyncpg.exceptions as pgerr

from apprun.kernel.config import DatabaseConfig
from apprun.kernel.db.marks import TxMarks
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

__all__ = ["NestedCheckout", "PostgresDatabase", "translate_pg_error"]

_log = get_logger("apprun.db")
#: What `_PgConnection.notify` takes as a channel (it is sent as a literal with the COMMIT).
_CHANNEL = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: The task holding a connection of this context, if any. A task created while
#: a connection is held inherits the variable, so the holder is compared with
#: the current task rather than trusted as a flag.
_holder: ContextVar[asyncio.Task[Any] | None] = ContextVar("apprun_db_holder", default=None)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Release without a reset query: nothing outlives a transaction (see the module docstring)."""


class NestedCheckout(RuntimeError):
    """A task holding a pooled connection asked the pool for another one."""


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, reset
    TimeoutError,
    pgerr.PostgresConnectionError,  # SQLSTATE class 08
    pgerr.CannotConnectNowError,  # starting up / shutting down
    pgerr.AdminShutdownError,
    pgerr.CrashShutdownError,
    pgerr.TooManyConnectionsError,
)


def translate_pg_error(exc: BaseException) -> Exception | None:
    """The `ApiError` a driver exception stands for, or None to let it propagate."""
    if isinstance(exc, pgerr.UniqueViolationError):
        return UniqueViolation(getattr(exc, "constraint_name", "") or "")
    if isinstance(exc, pgerr.ForeignKeyViolationError):
        return ForeignKeyViolation(details={"constraint": getattr(exc, "constraint_name", None)})
    if isinstance(exc, pgerr.NotNullViolationError):
        return NotNullViolation(getattr(exc, "column_name", "") or "")
    if _client_text_search(exc):
        return InvalidValue(details={"reason": FULL_TEXT_REFUSED})
    if isinstance(exc, pgerr.DataError | pgerr.InvalidRegularExpressionError):
        return InvalidValue(details={"reason": str(exc).split("\n", 1)[0][:300]})
    if isinstance(exc, pgerr.QueryCanceledError):
        return StatementTimeout()
    if isinstance(exc, pgerr.TransactionRollbackError):
        # A deadlock victim or a serialization failure (40xxx): the transaction did nothing
        # wrong and may simply be retried, as SQLite's busy writer (503 db.busy, Retry-After).
        return DatabaseUnavailable(code="db.busy")
    if isinstance(exc, _UNAVAILABLE):
        return DatabaseUnavailable()
    if isinstance(exc, pgerr.InterfaceError) and "closed" in str(exc):
        return DatabaseUnavailable()
    return None


def _client_text_search(exc: BaseException) -> bool:
    """A full-text query or configuration named by the client that PostgreSQL refuses."""
    message = str(exc)
    if isinstance(exc, pgerr.PostgresSyntaxError):
        return "tsquery" in message
    return isinstance(exc, pgerr.UndefinedObjectError) and "text search configuration" in message


@contextmanager
def _call(sql: str) -> Iterator[None]:
    """One statement: traced, and a driver error turned into its `ApiError` where it is raised.

    Translating here (not only when the transaction ends) lets code inside a
    transaction catch `UniqueViolation` and friends on both dialects alike.
    """
    with db_span("postgres", sql):
        try:
            yield
        except pgerr.PostgresError as exc:
            translated = translate_pg_error(exc)
            if translated is None:
                raise
            raise translated from exc


class _PgConnection:
    dialect: Dialect = "postgres"

    def __init__(
        self, raw: asyncpg.Connection, after_commit: list[Callable[[], None]] | None = None,
        tx: _LocalTransaction | None = None,
    ) -> None:  # fmt: skip
        self._raw = raw
        self._after_commit = after_commit
        #: Channels to notify with the COMMIT (a transaction with settings), else None: notify at once.
        self._notices = tx.notices if tx is not None else None
        #: Statements to send with the COMMIT (a transaction with settings), else None: run them at once.
        self._at_commit = tx.at_commit if tx is not None else None
        self.tx_state: dict[str, Any] = {}
        #: Savepoints opened so far (their names are numbered).
        self._savepoints = 0

    def on_commit(self, callback: Callable[[], None]) -> None:
        if self._after_commit is None:
            callback()
        else:
            self._after_commit.append(callback)

    async def notify(self, channel: str) -> None:
        if not _CHANNEL.match(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        if self._notices is None:
            await self.execute("SELECT pg_notify($1, '')", channel)
        elif channel not in self._notices:
            self._notices.append(channel)

    async def execute_at_commit(self, sql: str, *args: Any) -> None:
        if self._at_commit is None:
            await self.execute(sql, *args)
        else:
            self._at_commit.append(_with_literals(sql, args))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        callbacks = self._after_commit
        if callbacks is None:
            raise RuntimeError("a savepoint needs a transaction")
        self._savepoints += 1
        name = f"apprun_sp{self._savepoints}"
        marks = TxMarks(callbacks, self.tx_state, *(q for q in (self._notices, self._at_commit) if q is not None))
        await self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # Valid in an aborted transaction too; if it fails (the connection is gone), that error is raised.
            await self.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
            marks.restore()
            raise
        await self.execute(f"RELEASE SAVEPOINT {name}")

    async def execute(self, sql: str, *args: Any) -> int:
        with _call(sql):
            status: str = await self._raw.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        with _call(sql):
            await self._raw.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _call(sql):
            rows: list[Row] = await self._raw.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _call(sql):
            row: Row | None = await self._raw.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _call(sql):
            return await self._raw.fetchval(sql, *args)

    @property
    def raw(self) -> asyncpg.Connection:
        """The driver connection, for adapters that need asyncpg's own API."""
        return self._raw


def _literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings: only the quote needs doubling)."""
    if "\x00" in value:
        raise ValueError("a setting cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


#: Statements `_with_literals` has split at their parameters (a handful of fixed texts).
_TEMPLATES: dict[str, list[str]] = {}
_PARAMETER = re.compile(r"\$(\d+)")


def _with_literals(sql: str, args: Sequence[Any]) -> str:
    """``sql`` with its ``$n`` replaced by ``args`` as literals, for a simple-query script.

    For the few fixed statements that `execute_at_commit` takes: one with a
    quote of its own could hold a ``$n`` that is not a parameter, so it is refused.
    """
    parts = _TEMPLATES.get(sql)
    if parts is None:
        if "'" in sql or "--" in sql or "/*" in sql:
            raise ValueError("a statement sent with the COMMIT has no literal or comment of its own")
        parts = _PARAMETER.split(sql)
        if len(_TEMPLATES) < 256:
            _TEMPLATES[sql] = parts
    # parts alternates text and parameter numbers: text, n, text, n, ..., text
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        out.append(_value_literal(args[int(parts[i]) - 1]))
        out.append(parts[i + 1])
    return "".join(out)


def _value_literal(value: Any) -> str:
    """A bound value as an SQL literal; its type comes from where it is used (an untyped literal)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return _literal(value.isoformat())
    if isinstance(value, str):
        # E'' reads backslashes as escapes whatever standard_conforming_strings says, so doubling
        # them (and the quotes) keeps any text a literal: client data is quoted here, not only settings.
        if "\x00" in value:
            raise ValueError("a text value cannot hold a NUL character")
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    raise TypeError(f"no literal for a {type(value).__name__} sent with the COMMIT")


class _LocalTransaction:
    """``BEGIN`` and the transaction's settings in one round trip; ``COMMIT`` or ``ROLLBACK`` at the end.

    asyncpg's own transaction sends ``BEGIN`` alone, and the settings would be
    a second round trip. Without arguments, asyncpg sends the script with the
    simple query protocol, which runs several statements at once; the values
    are quoted as literals (`_literal`). The ``COMMIT`` goes the same way,
    after the statements queued for it (`_PgConnection.execute_at_commit`)
    and the notifications: if one of them fails, nothing is committed.
    """

    __slots__ = ("at_commit", "notices", "raw", "script")

    def __init__(self, raw: asyncpg.Connection, local: Mapping[str, str]) -> None:
        self.raw = raw
        sets = ", ".join(f"set_config({_literal(name)}, {_literal(value)}, true)" for name, value in local.items())
        self.script = f"BEGIN; SELECT {sets}"
        #: Channels `_PgConnection.notify` asked for: notified in the COMMIT's round trip.
        self.notices: list[str] = []
        #: Statements `_PgConnection.execute_at_commit` queued, values in place: sent before the COMMIT.
        self.at_commit: list[str] = []

    async def __aenter__(self) -> _LocalTransaction:
        try:
            await self.raw.execute(self.script)
        except BaseException as exc:
            await self.__aexit__(type(exc))
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            queued = "".join(f"{statement}; " for statement in self.at_commit)
            notify = "".join(f"SELECT pg_notify({_literal(channel)}, ''); " for channel in self.notices)
            try:
                await self.raw.execute(f"{queued}{notify}COMMIT")
            except BaseException:
                await self._rollback()  # a queued statement failed: the transaction is still open, aborted
                raise
            return
        await self._rollback()

    async def _rollback(self) -> None:
        if self.raw.is_closed() or not self.raw.is_in_transaction():
            return
        # A cancelled query leaves the connection busy: then the pool rolls back (or drops it) on
        # release, and the error being raised is still the one to report.
        with contextlib.suppress(pgerr.PostgresError, pgerr.InterfaceError, OSError):
            await self.raw.execute("ROLLBACK")


class PostgresDatabase:
    """A pool of asyncpg connections."""

    dialect: Dialect = "postgres"

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        pool_size: int = 10,
        pool_timeout: float = 5.0,
        connect_timeout: float = 3.0,
        statement_timeout: float = 15.0,
        application_name: str = "apprun",
        strict_checkout: bool = False,
    ) -> None:
        self.config = config
        self.strict_checkout = strict_checkout
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._waiting = 0

    def describe(self) -> str:
        return self.config.describe()

    async def open(self) -> None:
        # min_size=0: the pool exists even while PostgreSQL is down, and fills
        # on demand once it is back.
        self._pool = asyncpg.create_pool(
            host=self.config.host,
            port=self.config.port,
            user=self.config.user,
            password=self.config.password,
            database=self.config.name,
            ssl=self.config.sslmode,
            min_size=0,
            max_size=self.pool_size,
            timeout=self.connect_timeout,
            # A client-side backstop a little above the server's own timeout.
            command_timeout=self.statement_timeout + 5,
            max_inactive_connection_lifetime=300,
            reset=_keep_session,
            server_settings={
                "application_name": self.application_name,
                "statement_timeout": str(int(self.statement_timeout * 1000)),
                "idle_in_transaction_session_timeout": str(int(self.statement_timeout * 2000)),
            },
        )
        await self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def _checkout(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise DatabaseUnavailable()
        task = asyncio.current_task()
        if task is not None and _holder.get() is task:
            self._nested_checkout()
        self._waiting += 1
        try:
            raw = await self._pool.acquire(timeout=self.pool_timeout)
        except TimeoutError as exc:
            # A full pool is load, not an outage: say which one it is.
            busy = self._pool.get_size() >= self._pool.get_max_size() and self._pool.get_idle_size() == 0
            raise DatabaseUnavailable(code="db.pool_exhausted" if busy else "db.unavailable") from exc
        except BaseException as exc:
            translated = translate_pg_error(exc)
            if translated is not None:
                raise translated from exc
            raise
        finally:
            self._waiting -= 1
        token = _holder.set(task)
        try:
            yield raw
        finally:
            _holder.reset(token)
            await self._pool.release(raw)

    def _nested_checkout(self) -> None:
        site = "".join(traceback.format_stack(limit=12)[:-3])
        if self.strict_checkout:
            raise NestedCheckout(f"this task already holds a pooled connection; checked out again at:\n{site}")
        _log.warning("db_nested_checkout", stack=site)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        try:
            async with self._checkout() as raw:
                yield _PgConnection(raw)
        except (pgerr.PostgresError, pgerr.InterfaceError, OSError, TimeoutError) as exc:
            translated = translate_pg_error(exc)
            if translated is not None:
                raise translated from exc
            raise

    @asynccontextmanager
    async def transaction(self, local: Mapping[str, str] | None = None) -> AsyncIterator[Connection]:
        callbacks: list[Callable[[], None]] = []
        try:
            async with self._checkout() as raw:
                if local:
                    async with _LocalTransaction(raw, local) as tx:
                        yield _PgConnection(raw, callbacks, tx)
                else:
                    async with raw.transaction():
                        yield _PgConnection(raw, callbacks)
        except (pgerr.PostgresError, pgerr.InterfaceError, OSError, TimeoutError) as exc:
            translated = translate_pg_error(exc)
            if translated is not None:
                raise translated from exc
            raise
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - the commit stands; a failing hook must not undo the reply
                _log.exception("on_commit_failed")

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self.read() as conn:
            await conn.fetchval("SELECT 1")
        return time.perf_counter() - start

    def pool_stats(self) -> PoolStats:
        if self._pool is None:
            return PoolStats(size=0, idle=0, max=self.pool_size, waiting=0)
        return PoolStats(
            size=self._pool.get_size(),
            idle=self._pool.get_idle_size(),
            max=self._pool.get_max_size(),
            waiting=self._waiting,
        )
