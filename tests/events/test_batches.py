"""Subscribers take events in batches: one transaction, one de-duplication statement, a savepoint per event.

The runner is driven here by a real bus (the in-process one and NATS
JetStream) on both databases. Events are published before the consumer asks
(NATS) or all at once (memory), so that they reach the handler in one batch;
what the handlers write says which transaction they ran in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest

from apprun.events.bus import EventBus
from apprun.events.envelope import CloudEvent, encode, make_event, subject_for
from apprun.events.memory_bus import MemoryBus
from apprun.events.nats_bus import NatsBus
from apprun.events.subscriptions import HandlerContext, Registry, Runner
from apprun.kernel.db import Database
from apprun.kernel.ids import new_id
from apprun.modules import Settings
from apprun.testing.engines import NatsServer
from tests.support.consumers import consumer_state
from tests.support.polling import eventually
from tests.support.test_app import prepare

pytestmark = pytest.mark.timeout(90)

CONSUMER = "test.batch"
TABLE = "CREATE TABLE test_batch (event_id TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER, tx TEXT NOT NULL)"


@dataclass
class Env:
    db: Database
    bus_backend: str
    tmp_path: Path
    nats: NatsServer | None = None
    buses: list[EventBus] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def delivered(self, consumer: str, outcome: str) -> None:  # noqa: ARG002 - the runner's metrics port
        self.outcomes.append(outcome)

    async def bus(self) -> EventBus:
        bus: EventBus
        if self.nats is None:
            bus = MemoryBus()
        else:
            bus = NatsBus(self.nats.url, instance=f"test{len(self.buses)}", retention_days=1)
        await bus.start()
        if isinstance(bus, NatsBus):
            await asyncio.wait_for(bus._ready.wait(), 20)
        self.buses.append(bus)
        return bus

    async def runner(self, bus: EventBus, registry: Registry, *, batch: int = 100) -> Runner:
        runner = Runner(self.db, bus, default_ack_wait=30, default_max_deliver=5, batch=batch, metrics=self)
        for subscriber in registry.subscribers.values():
            await runner.start(subscriber)
        return runner

    async def publish(self, bus: EventBus, events: list[CloudEvent], runner: Callable[[], Any]) -> None:
        """All of ``events`` to the consumer in one batch: stored before it asks (NATS), or at once (memory)."""
        if isinstance(bus, MemoryBus):
            await runner()
            await bus.publish(events)
        else:
            await bus.publish(events)
            await runner()

    async def rows(self) -> list[Any]:
        async with self.db.read() as conn:
            return list(await conn.fetch("SELECT event_id, attempt, seq, tx FROM test_batch ORDER BY seq"))

    async def marks(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM apprun_event_processed WHERE consumer = $1", CONSUMER))


@asynccontextmanager
async def _env(backend: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Env]:
    db = await prepare(settings)
    async with db.transaction() as conn:
        await conn.execute(TABLE)
    found = Env(db=db, bus_backend=backend, tmp_path=tmp_path)
    if backend == "nats":
        found.nats = NatsServer(tmp_path / "nats")
        found.nats.start()
    try:
        yield found
    finally:
        for bus in found.buses:
            await bus.close()
        await db.close()
        if found.nats is not None:
            found.nats.stop()


@pytest.fixture(params=["memory", "nats"])
async def env(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> AsyncIterator[Env]:
    async with _env(request.param, make_settings(database_url=database_url), tmp_path) as found:
        yield found


@pytest.fixture
async def nats_env(make_settings: Callable[..., Settings], database_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    """On JetStream only: what these tests do (a copy with another message id, a stop) has no in-process equal."""
    async with _env("nats", make_settings(database_url=database_url), tmp_path) as found:
        yield found


async def _record(event: CloudEvent, ctx: HandlerContext) -> None:
    # One marker per transaction: the handlers of one batch share it.
    tx = ctx.conn.tx_state.setdefault("test.tx", new_id())
    await ctx.conn.execute(
        "INSERT INTO test_batch (event_id, attempt, seq, tx) VALUES ($1, $2, $3, $4)",
        event.id,
        ctx.attempt,
        event.data["seq"],
        tx,
    )


def _events(n: int, tenant: str = "t1", **extra: Any) -> list[CloudEvent]:
    return [
        make_event("app.test.batch", tenant_id=tenant, subject="orders/1", data={"seq": i, **extra}) for i in range(n)
    ]


async def test_one_failing_handler_fails_only_its_event_and_is_not_doubled(env: Env) -> None:
    registry = Registry()
    woke: list[str] = []

    @registry.subscribe("app.test.batch", name=CONSUMER)
    async def handler(event: CloudEvent, ctx: HandlerContext) -> None:
        await _record(event, ctx)
        ctx.conn.on_commit(lambda: woke.append(event.id))
        if event.data["seq"] == 2 and ctx.attempt == 1:
            raise RuntimeError("the third event fails once")

    bus = await env.bus()
    events = _events(5)
    await env.publish(bus, events, lambda: env.runner(bus, registry))

    async def all_handled() -> list[Any] | None:
        rows = await env.rows()
        return rows if len(rows) == 5 else None

    rows = await eventually(all_handled, "the five events handled, the failed one on its second delivery")
    assert [(r["event_id"], r["attempt"]) for r in rows] == [
        (e.id, 2 if e.data["seq"] == 2 else 1) for e in events
    ]  # the failed delivery's insert was rolled back with its savepoint: one row each
    if env.nats is None:
        # The four others committed together, in one transaction. (JetStream may split a batch: the
        # consumer takes what the server hands over within a few milliseconds, fewer on a busy machine.)
        assert len({r["tx"] for r in rows if r["attempt"] == 1}) == 1
    assert await env.marks() == 5
    await eventually(lambda: _n(woke, 5), "each commit hook once")
    assert sorted(woke) == sorted(e.id for e in events)  # the failed handler's hook was dropped
    assert sorted(env.outcomes) == ["ok"] * 5 + ["retry"]


async def _n(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_events_already_processed_in_a_batch_are_acked_without_the_handler(env: Env) -> None:
    registry = Registry()
    registry.subscribe("app.test.batch", name=CONSUMER)(_record)
    bus = await env.bus()
    events = _events(4)
    async with env.db.transaction() as conn:  # the second was handled before (a redelivery, say)
        await conn.execute(
            "INSERT INTO apprun_event_processed (consumer, event_id, processed_at) VALUES ($1, $2, CURRENT_TIMESTAMP)",
            CONSUMER,
            events[1].id,
        )
    await env.publish(bus, events, lambda: env.runner(bus, registry))
    await eventually(lambda: _n(env.outcomes, 4), "four deliveries settled")
    assert [r["event_id"] for r in await env.rows()] == [events[0].id, events[2].id, events[3].id]
    assert sorted(env.outcomes) == ["duplicate", "ok", "ok", "ok"]


async def test_a_copy_of_an_event_is_handled_once(nats_env: Env) -> None:
    # The in-process bus drops a copy at publishing; JetStream keeps one with another message id.
    env = nats_env
    assert env.nats is not None
    registry = Registry()
    registry.subscribe("app.test.batch", name=CONSUMER)(_record)
    bus = await env.bus()
    events = _events(3)
    nc = await nats.connect(env.nats.url)
    try:
        js = nc.jetstream()
        # A copy published apart from the first (say, by a relay past JetStream's de-duplication window).
        for i, event in enumerate([*events, events[0]]):
            await js.publish(subject_for(event), encode(event), headers={"Nats-Msg-Id": f"copy-{i}"})
    finally:
        await nc.close()
    await env.runner(bus, registry)
    await eventually(lambda: _n(env.outcomes, 4), "four deliveries settled")
    rows = await env.rows()
    # Handled once, whether the copy came in the batch of its first (the de-duplication insert of one
    # batch) or in a later one (the marker committed before).
    assert [r["event_id"] for r in rows] == [e.id for e in events]
    assert sorted(env.outcomes) == ["duplicate", "ok", "ok", "ok"]


async def test_stopped_between_commit_and_ack_the_redelivery_is_a_duplicate(nats_env: Env) -> None:
    # The in-process bus keeps nothing across a stop.
    env = nats_env
    registry = Registry()
    crash = [True]

    def stop_now() -> None:
        if crash[0]:
            crash[0] = False
            raise asyncio.CancelledError  # the process stops after COMMIT, before any ack is sent

    @registry.subscribe("app.test.batch", name=CONSUMER, ack_wait=1.0)
    async def handler(event: CloudEvent, ctx: HandlerContext) -> None:
        await _record(event, ctx)
        ctx.conn.on_commit(stop_now)

    first = await env.bus()
    events = _events(3)
    await env.publish(first, events, lambda: env.runner(first, registry))
    await eventually(lambda: _rows_n(env, 3), "the batch committed")
    assert env.outcomes == []  # nothing was acked
    await first.close()

    second = await env.bus()
    await env.runner(second, registry)
    await eventually(lambda: _n(env.outcomes, 3), "the three redelivered after AckWait")
    assert env.outcomes == ["duplicate"] * 3

    async def idle() -> bool:
        _, pending, ack_pending = await consumer_state(env.nats.url, CONSUMER)  # type: ignore[union-attr]
        return pending == 0 and ack_pending == 0

    await eventually(idle, "the consumer with nothing left to deliver")
    rows = await env.rows()
    assert [(r["event_id"], r["attempt"]) for r in rows] == [(e.id, 1) for e in events]  # the handler ran once


async def _rows_n(env: Env, n: int) -> bool:
    return len(await env.rows()) >= n


async def test_events_of_one_subject_are_handled_in_order_across_batches(env: Env) -> None:
    registry = Registry()
    seen: list[str] = []

    @registry.subscribe("app.test.batch", name=CONSUMER)
    async def handler(event: CloudEvent, ctx: HandlerContext) -> None:
        seen.append(event.id)
        await _record(event, ctx)

    bus = await env.bus()
    events = _events(40)
    await env.publish(bus, events, lambda: env.runner(bus, registry, batch=7))
    await eventually(lambda: _rows_n(env, 40), "the forty events handled")
    assert seen == [e.id for e in events]
    assert len({r["tx"] for r in await env.rows()}) >= 6  # batches of seven at most
