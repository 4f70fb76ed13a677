"""Rate limits: fixed windows counted in the database, in Redis, or in memory.

A limit is "at most N hits per W seconds per key". `hit` counts one and says
whether it is allowed and, if not, how many seconds until the window resets
(the ``Retry-After`` value). Where the counts live (``RATE_LIMIT_BACKEND``):

- ``database`` (the default without Redis): the ``apprun_rate_limits`` table
  of apprun's own database, so every worker of a machine (SQLite) or every
  instance of a deployment (PostgreSQL) shares them;
- ``redis`` (the default when ``REDIS_HOST`` is set): shared by every instance;
- ``memory``: each process counts alone, which multiplies the effective limit
  by the number of workers. For tests and single-process tools only.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from apprun.kernel.errors import DatabaseUnavailable, StatementTimeout, TooManyRequests
from apprun.kernel.logging import get_logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from apprun.kernel.db import Connection, Database

__all__ = [
    "DatabaseRateLimiter",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "Verdict",
    "enforce",
]

_log = get_logger("apprun.ratelimit")


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` hits per ``seconds``."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``"10/60"`` → 10 per 60 s."""
        count, _, seconds = text.partition("/")
        return cls(int(count), int(seconds or "60"))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after: int


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> Verdict: ...

    async def peek(self, key: str, limit: Limit) -> Verdict:
        """Whether one more hit would be allowed, without counting it."""
        ...

    async def reset(self, key: str) -> None: ...

    async def undo(self, key: str) -> None:
        """Take back one hit of the current window (an attempt that turned out legitimate)."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Fixed windows in a dict; expired windows are swept as the dict grows."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, limit: Limit) -> Verdict:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= limit.seconds:
            start, count = now, 0
        count += 1
        if len(self._windows) >= self._max_keys and key not in self._windows:
            self._sweep(now, limit.seconds)
        self._windows[key] = (start, count)
        retry = max(1, math.ceil(start + limit.seconds - now))
        return Verdict(allowed=count <= limit.count, remaining=max(0, limit.count - count), retry_after=retry)

    async def peek(self, key: str, limit: Limit) -> Verdict:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= limit.seconds:
            start, count = now, 0
        retry = max(1, math.ceil(start + limit.seconds - now))
        return Verdict(allowed=count < limit.count, remaining=max(0, limit.count - count), retry_after=retry)

    def _sweep(self, now: float, horizon: int) -> None:
        for stale in [k for k, (start, _) in self._windows.items() if now - start >= horizon]:
            del self._windows[stale]
        if len(self._windows) >= self._max_keys:  # still full: drop the oldest half
            for old in sorted(self._windows, key=lambda k: self._windows[k][0])[: self._max_keys // 2]:
                del self._windows[old]

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def undo(self, key: str) -> None:
        window = self._windows.get(key)
        if window is not None and window[1] > 0:
            self._windows[key] = (window[0], window[1] - 1)

    async def close(self) -> None:
        self._windows.clear()


class RedisRateLimiter:
    """Fixed windows in Redis: ``INCR`` plus ``EXPIRE`` on the first hit, atomically."""

    _SCRIPT = """
    local n = redis.call('INCR', KEYS[1])
    if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
    local ttl = redis.call('TTL', KEYS[1])
    return {n, ttl}
    """

    def __init__(self, client: Redis, prefix: str = "apprun:rl:") -> None:
        # Imported here: the redis package costs every worker ~8 MB, and only a Redis store needs it.
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(self._SCRIPT)
        # DECR keeps the key's TTL; a key that expired meanwhile is not brought back at -1.
        self._undo = client.register_script(
            "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
            "if n > 0 then return redis.call('DECR', KEYS[1]) end return 0"
        )

    async def hit(self, key: str, limit: Limit) -> Verdict:
        try:
            count, ttl = await self._script(keys=[self._prefix + key], args=[limit.seconds])
        except self._errors as exc:
            # Fail open: an outage of the limiter's store must not take sign-in down
            # with it. The health check reports Redis DOWN meanwhile.
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return Verdict(allowed=True, remaining=limit.count, retry_after=1)
        count, ttl = int(count), int(ttl)
        return Verdict(
            allowed=count <= limit.count,
            remaining=max(0, limit.count - count),
            retry_after=max(1, ttl if ttl > 0 else limit.seconds),
        )

    async def peek(self, key: str, limit: Limit) -> Verdict:
        pipe = self._client.pipeline()
        pipe.get(self._prefix + key)
        pipe.ttl(self._prefix + key)
        try:
            raw, ttl = await pipe.execute()
        except self._errors as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return Verdict(allowed=True, remaining=limit.count, retry_after=1)
        count = int(raw or 0)
        return Verdict(
            allowed=count < limit.count,
            remaining=max(0, limit.count - count),
            retry_after=max(1, int(ttl) if ttl and int(ttl) > 0 else limit.seconds),
        )

    async def reset(self, key: str) -> None:
        try:
            await self._client.delete(self._prefix + key)
        except self._errors as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")

    async def undo(self, key: str) -> None:
        try:
            await self._undo(keys=[self._prefix + key])
        except self._errors as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        await self._client.aclose()


#: Longest key the table holds (``String(300)``); longer ones are stored by their digest.
_MAX_KEY = 300

#: One statement counts a hit, on SQLite and PostgreSQL alike: a key seen for
#: the first time starts a window at 1; a key whose window ended ($3 is "now
#: minus the window") starts a new one; otherwise the count goes up by one.
#: The row lock of the upsert (PostgreSQL) or the database's single writer
#: (SQLite) makes it atomic across workers and instances. Every SET
#: expression reads the row as it was before the update, on both engines.
_HIT = (
    "INSERT INTO apprun_rate_limits (key, window_start, count) VALUES ($1, $2, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "window_start = CASE WHEN apprun_rate_limits.window_start <= $3 "
    "THEN excluded.window_start ELSE apprun_rate_limits.window_start END, "
    "count = CASE WHEN apprun_rate_limits.window_start <= $3 THEN 1 ELSE apprun_rate_limits.count + 1 END "
    "RETURNING window_start, count"
)
#: At most $2 rows per statement, found through the ``window_start`` index.
_SWEEP = (
    "DELETE FROM apprun_rate_limits WHERE key IN (SELECT key FROM apprun_rate_limits WHERE window_start < $1 LIMIT $2)"
)


class DatabaseRateLimiter:
    """Fixed windows in the ``apprun_rate_limits`` table of apprun's database.

    The default store without Redis: the workers of one machine share the
    SQLite file, and the instances of a deployment share its PostgreSQL, so a
    limit holds across all of them (a count kept in memory would be multiplied
    by the number of workers). Each hit is one small write transaction
    (measured here: 0.3 ms on SQLite, whose WAL commits do not sync; 0.9 ms on
    PostgreSQL with its asynchronous commit). Only auth endpoints are limited,
    and each of them already writes (a session, an audit record, a token) and
    a sign-in hashes a password (tens of milliseconds), so the few hits of a
    request cost a few percent of it, and hold SQLite's write lock for well
    under a millisecond each.

    Expired rows are swept now and then, not on every hit: at most once per
    ``sweep_every`` seconds in each process, ``sweep_batch`` rows a statement
    (again at the next hit when the batch was full). A row is expired when its
    window began more than ``retention`` seconds ago, where ``retention`` must
    cover the longest limit counted in the table (and grows to any longer limit
    this process sees): sweeping a live window would forgive its count.
    """

    def __init__(
        self,
        db: Database,
        *,
        retention: int = 3600,
        sweep_every: float = 60.0,
        sweep_batch: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._retention = retention
        self._sweep_every = sweep_every
        self._sweep_batch = sweep_batch
        self._clock = clock  # unix seconds: the windows are compared across processes and machines
        self._next_sweep = clock() + sweep_every

    async def hit(self, key: str, limit: Limit) -> Verdict:
        now = self._clock()
        self._retention = max(self._retention, limit.seconds)
        try:
            async with self._counting() as conn:
                row = await conn.fetchrow(_HIT, _stored(key), now, now - limit.seconds)
        except (DatabaseUnavailable, StatementTimeout, OSError) as exc:
            # Fail open, as the Redis store does. The counters share the database with
            # everything they protect: when it is away, sign-in cannot succeed anyway
            # (it reads the user and writes the session) and answers 503 itself, while
            # a passing hiccup (a SQLite writer busy past its timeout, a failover) must
            # not refuse requests that could succeed. Guessing stays slow meanwhile:
            # each try still costs an argon2 verification.
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return Verdict(allowed=True, remaining=limit.count, retry_after=1)
        # An upsert with RETURNING always returns its row; the fallback only satisfies the types.
        count, start = (int(row["count"]), float(row["window_start"])) if row else (1, now)
        if now >= self._next_sweep:
            await self.sweep()
        return Verdict(
            allowed=count <= limit.count,
            remaining=max(0, limit.count - count),
            retry_after=max(1, math.ceil(start + limit.seconds - now)),
        )

    async def peek(self, key: str, limit: Limit) -> Verdict:
        now = self._clock()
        try:
            async with self._db.read() as conn:
                row = await conn.fetchrow(
                    "SELECT window_start, count FROM apprun_rate_limits WHERE key = $1", _stored(key)
                )
        except (DatabaseUnavailable, StatementTimeout, OSError) as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return Verdict(allowed=True, remaining=limit.count, retry_after=1)
        start, count = (float(row["window_start"]), int(row["count"])) if row else (now, 0)
        if now - start >= limit.seconds:
            start, count = now, 0
        return Verdict(
            allowed=count < limit.count,
            remaining=max(0, limit.count - count),
            retry_after=max(1, math.ceil(start + limit.seconds - now)),
        )

    async def reset(self, key: str) -> None:
        await self._write("DELETE FROM apprun_rate_limits WHERE key = $1", _stored(key))

    async def undo(self, key: str) -> None:
        await self._write("UPDATE apprun_rate_limits SET count = count - 1 WHERE key = $1 AND count > 0", _stored(key))

    async def sweep(self) -> int:
        """Delete one batch of expired rows; how many went."""
        now = self._clock()
        deleted = await self._write(_SWEEP, now - self._retention, self._sweep_batch)
        if deleted < self._sweep_batch:  # caught up (or failed): wait for the next period
            self._next_sweep = now + self._sweep_every
        return max(deleted, 0)

    async def _write(self, sql: str, *args: object) -> int:
        try:
            async with self._counting() as conn:
                return await conn.execute(sql, *args)
        except (DatabaseUnavailable, StatementTimeout, OSError) as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return -1

    @contextlib.asynccontextmanager
    async def _counting(self) -> AsyncIterator[Connection]:
        async with self._db.transaction() as conn:
            if conn.dialect == "postgres":
                # Asynchronous commit: a count lost in a crash of the database costs nothing,
                # while waiting for the WAL flush would cost every hit a disk sync (measured
                # here: 2.8 ms a hit with it, a fraction of that without). Durable data is
                # unaffected: the setting ends with this transaction.
                await conn.execute("SET LOCAL synchronous_commit = off")
            yield conn

    async def close(self) -> None:
        """Nothing to release: the database belongs to the runtime."""


def _stored(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


async def enforce(limiter: RateLimiter, key: str, limit: Limit) -> None:
    """Count a hit; raise 429 with ``Retry-After`` when over the limit."""
    verdict = await limiter.hit(key, limit)
    if not verdict.allowed:
        raise TooManyRequests(
            params={"retry_after": verdict.retry_after},
            headers={"Retry-After": str(verdict.retry_after)},
        )
