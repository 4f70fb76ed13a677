"""The rate-limit store in apprun's database (`DatabaseRateLimiter`), on SQLite and PostgreSQL.

Fixed windows counted by one upsert: exact under concurrency, also between
two pools (as between two workers), windows that end, a bounded sweep that
never forgives a running window, and fail-open when the database is away.
Time is a clock the test moves, never a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apprun.kernel.db import Database, create_database
from apprun.kernel.ratelimit import DatabaseRateLimiter, Limit
from apprun.modules import Settings

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def other_pool(settings: Settings, db: Database) -> AsyncIterator[Database]:
    """A second pool on the same database, as a second worker process has."""
    second = create_database(settings)
    await second.open()
    yield second
    await second.close()


async def _rows(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        return {r["key"]: r["count"] for r in await conn.fetch("SELECT key, count FROM apprun_rate_limits")}


async def test_a_window_counts_to_its_limit_then_starts_over(db: Database, clock: Clock) -> None:
    limiter = DatabaseRateLimiter(db, clock=clock)
    limit = Limit(3, 60)
    verdicts = [await limiter.hit("k", limit) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    clock.now += 20.5
    refused = await limiter.hit("k", limit)
    assert (refused.allowed, refused.retry_after) == (False, 40)  # the window began at the first hit
    assert not (await limiter.peek("k", limit)).allowed
    clock.now = T0 + 60
    assert (await limiter.peek("k", limit)).allowed
    fresh = await limiter.hit("k", limit)
    assert (fresh.allowed, fresh.remaining) == (True, 2)
    assert await _rows(db) == {"k": 1}


async def test_reset_and_undo(db: Database, clock: Clock) -> None:
    limiter = DatabaseRateLimiter(db, clock=clock)
    limit = Limit(2, 60)
    for _ in range(3):
        await limiter.hit("a", limit)
    await limiter.undo("a")
    assert await _rows(db) == {"a": 2}
    assert not (await limiter.peek("a", limit)).allowed
    await limiter.undo("a")
    assert (await limiter.peek("a", limit)).allowed
    await limiter.undo("a")
    await limiter.undo("a")
    assert await _rows(db) == {"a": 0}, "never below zero"
    await limiter.undo("never seen")
    await limiter.reset("a")
    assert await _rows(db) == {}


async def test_concurrent_hits_from_two_pools_are_each_counted_once(
    db: Database, other_pool: Database, clock: Clock
) -> None:
    first = DatabaseRateLimiter(db, clock=clock)
    second = DatabaseRateLimiter(other_pool, clock=clock)
    limit = Limit(10, 60)
    verdicts = await asyncio.gather(*(limiter.hit("hot", limit) for limiter in [first, second] * 20))
    assert sum(v.allowed for v in verdicts) == 10
    assert sorted(v.remaining for v in verdicts) == [0] * 31 + list(range(1, 10))
    assert await _rows(db) == {"hot": 40}


async def test_the_sweep_is_bounded_and_spares_running_windows(db: Database, clock: Clock) -> None:
    limiter = DatabaseRateLimiter(db, clock=clock, retention=100, sweep_every=60, sweep_batch=3)
    for i in range(5):
        await limiter.hit(f"old{i}", Limit(10, 100))
    clock.now = T0 + 90
    await limiter.hit("young", Limit(10, 100))  # its window runs until T0 + 190
    clock.now = T0 + 150
    await limiter.hit("trigger", Limit(10, 100))  # the first sweep: one batch of 3 of the 5 expired
    assert len(await _rows(db)) == 4
    await limiter.hit("trigger", Limit(10, 100))  # the batch was full: the next hit sweeps again
    assert set(await _rows(db)) == {"young", "trigger"}
    await limiter.hit("trigger", Limit(10, 100))
    assert await _rows(db) == {"young": 1, "trigger": 3}


async def test_the_sweep_keeps_rows_as_long_as_the_longest_limit(db: Database, clock: Clock) -> None:
    limiter = DatabaseRateLimiter(db, clock=clock, retention=60, sweep_every=60)
    await limiter.hit("lockout", Limit(10, 900))
    clock.now = T0 + 600
    await limiter.hit("ip", Limit(60, 60))  # sweeps; the lockout window is still running
    assert set(await _rows(db)) == {"lockout", "ip"}
    assert (await limiter.hit("lockout", Limit(10, 900))).remaining == 8


async def test_a_key_too_long_for_the_column_is_stored_by_its_digest(db: Database, clock: Clock) -> None:
    limiter = DatabaseRateLimiter(db, clock=clock)
    key = "auth:login:" + "x" * 400
    assert (await limiter.hit(key, Limit(1, 60))).allowed
    assert not (await limiter.hit(key, Limit(1, 60))).allowed
    [stored] = await _rows(db)
    assert stored.startswith("sha256:") and len(stored) <= 300


async def test_it_fails_open_when_the_database_is_away(settings: Settings, db: Database) -> None:
    away = create_database(settings)
    await away.open()
    await away.close()
    limiter = DatabaseRateLimiter(away)
    limit = Limit(1, 60)
    assert all([(await limiter.hit("k", limit)).allowed for _ in range(3)])
    assert (await limiter.peek("k", limit)).allowed
    await limiter.reset("k")
    await limiter.undo("k")
    assert await limiter.sweep() == 0
