"""Rate limits: fixed windows counted in memory (one process) or in Redis (shared).

A limit is "at most N hits per W seconds per key". `hit` counts one and says
whether it is allowed and, if not, how many seconds until the window resets
(the ``Retry-After`` value). With several workers or instances, configure
Redis (``REDIS_HOST``) so they share the counts; in memory each process
counts alone, which multiplies the effective limit by the number of workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import RedisError

from apprun.kernel.errors import TooManyRequests
from apprun.kernel.logging import get_logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Limit", "MemoryRateLimiter", "RateLimiter", "RedisRateLimiter", "enforce"]

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
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(self._SCRIPT)

    async def hit(self, key: str, limit: Limit) -> Verdict:
        try:
            count, ttl = await self._script(keys=[self._prefix + key], args=[limit.seconds])
        except (RedisError, OSError) as exc:
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
        except (RedisError, OSError) as exc:
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
        except (RedisError, OSError) as exc:
            _log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        await self._client.aclose()


async def enforce(limiter: RateLimiter, key: str, limit: Limit) -> None:
    """Count a hit; raise 429 with ``Retry-After`` when over the limit."""
    verdict = await limiter.hit(key, limit)
    if not verdict.allowed:
        raise TooManyRequests(
            params={"retry_after": verdict.retry_after},
            headers={"Retry-After": str(verdict.retry_after)},
        )
