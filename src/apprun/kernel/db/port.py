"""The database port: one interface over SQLite and PostgreSQL.

Per-request code talks to the driver through this port (asyncpg, or the
stdlib ``sqlite3`` on a thread pool) — measured here, SQLAlchemy's async Core
kept only 0.41 times raw asyncpg's throughput, so SQLAlchemy is used for schema
and migrations only.

SQL uses PostgreSQL's positional parameters (``$1``, ``$2``); the SQLite
adapter rewrites them to SQLite's equivalent ``?1``, ``?2`` once per distinct
statement. Values are always bound, never formatted into the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["FULL_TEXT_REFUSED", "Connection", "Database", "Dialect", "PoolStats", "Row"]

#: The reason given when the database cannot parse a client's full-text query (both dialects).
FULL_TEXT_REFUSED = "the full-text search query or its language is not valid"

Dialect = Literal["sqlite", "postgres"]


@runtime_checkable
class Row(Protocol):
    """A result row: by column name or position (`sqlite3.Row`, `asyncpg.Record`)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connection-pool occupancy, exported as Prometheus gauges."""

    size: int
    idle: int
    max: int
    waiting: int


class Connection(Protocol):
    """One connection, checked out of the pool for a read or a transaction."""

    dialect: Dialect
    #: Scratch space that lives as long as the current transaction (or read).
    tx_state: dict[str, Any]

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it touched (-1 if unknown)."""
        ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current transaction has committed (never on rollback).

        Outside a transaction (a read connection) the callback runs at once.
        For what must happen only if the change stuck: waking the event relay,
        flushing mail.
        """
        ...

    async def execute_at_commit(self, sql: str, *args: Any) -> None:
        """Run a write that nothing in the transaction reads back, at the latest with the ``COMMIT``.

        PostgreSQL, in a transaction with settings (``transaction(local=...)``):
        queued, and sent in the ``COMMIT``'s round trip with its values as
        literals (text, integers, booleans, NULL, aware datetimes); if it fails,
        the commit fails. Until then the transaction's own reads do not see it;
        a savepoint that fails drops what its block queued. Otherwise (SQLite,
        other transactions) it runs at once. ``sql`` holds no literal or
        comment of its own, only ``$n`` parameters. For the event outbox: a
        create then costs one round trip less.
        """
        ...

    async def notify(self, channel: str) -> None:
        """PostgreSQL: ``NOTIFY channel`` (no payload), delivered when the transaction commits.

        In a transaction with settings (``transaction(local=...)``) it is sent
        with the ``COMMIT``, in the same round trip; otherwise at once (still
        delivered only at commit). ``channel`` is a lower-case identifier. SQLite
        has no listeners: nothing.
        """
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A savepoint in the current transaction, released when the block ends.

        If the block raises, what it wrote is rolled back to the savepoint (and
        the ``on_commit`` callbacks and ``tx_state`` it added are dropped); the
        error propagates and the transaction goes on without the block's work.
        Only inside `Database.transaction`; savepoints nest.
        """
        ...


class Database(Protocol):
    """A pool of connections to one database."""

    dialect: Dialect

    async def open(self) -> None:
        """Open the pool (connections are made lazily; this checks reachability)."""
        ...

    async def close(self) -> None: ...

    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for reads, outside any transaction."""
        ...

    def transaction(self, local: Mapping[str, str] | None = None) -> AbstractAsyncContextManager[Connection]:
        """A connection inside a transaction, committed on success, rolled back on error.

        ``local``: PostgreSQL settings for this transaction alone (``set_config(name, value, true)``),
        sent with ``BEGIN`` in one round trip. SQLite has no such settings and refuses them.
        """
        ...

    async def ping(self) -> float:
        """Round-trip one trivial query; seconds taken. Raises `DatabaseUnavailable`."""
        ...

    def pool_stats(self) -> PoolStats: ...

    def describe(self) -> str: ...
