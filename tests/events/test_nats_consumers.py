"""The JetStream consumers apprun keeps on a NATS server, across restarts and code changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from apprun.events.bus import ConsumerSpec, Delivery, StoredEvent
from apprun.events.envelope import encode, make_event
from apprun.events.nats_bus import STREAM, NatsBus
from apprun.testing.engines import NatsServer

pytestmark = pytest.mark.timeout(60)


async def _received(bus: NatsBus, spec: ConsumerSpec) -> asyncio.Queue[str]:
    got: asyncio.Queue[str] = asyncio.Queue()

    async def handler(batch: Sequence[Delivery]) -> None:
        for delivery in batch:
            await got.put(delivery.event.type)
            await delivery.ack()

    await bus.consume(spec, handler)
    return got


async def test_a_subscriber_whose_types_changed_receives_its_new_types(tmp_path: Path) -> None:
    """A durable consumer left by an earlier deployment is brought up to date, not reused as it was."""
    with NatsServer(tmp_path / "nats") as server:
        first = NatsBus(server.url, instance="one", retention_days=1)
        await first.start()
        await asyncio.wait_for(first._ready.wait(), 20)
        got = await _received(first, ConsumerSpec(name="mailer", types=("shop.order_placed",)))
        await first.publish([make_event("shop.order_placed", tenant_id="t1")])
        assert await asyncio.wait_for(got.get(), 20) == "shop.order_placed"
        await first.close()

        # The next release of the app subscribes "mailer" to another type.
        second = NatsBus(server.url, instance="two", retention_days=1, publish_timeout=5)
        await second.start()
        await asyncio.wait_for(second._ready.wait(), 20)
        spec = ConsumerSpec(name="mailer", types=("shop.order_shipped",), ack_wait=12.0, max_deliver=3)
        got = await _received(second, spec)
        await second.publish([make_event("shop.order_shipped", tenant_id="t1")])
        try:
            assert await asyncio.wait_for(got.get(), 20) == "shop.order_shipped"
            assert second._js is not None
            info = await second._js.consumer_info(STREAM, "apprun-mailer")
            assert info.config.ack_wait == 12.0
            assert info.config.max_deliver == 3
            assert got.empty()  # the old type's event was acked by the first release, not redelivered
        finally:
            await second.close()


async def test_stored_events_go_out_byte_for_byte_on_their_subject_once_per_id(tmp_path: Path) -> None:
    """The relay's path: the outbox's bytes are published as they are, on ``apprun.<tenant>.<type>``
    taken from the row's columns, and a second publish of the same id is dropped by JetStream."""
    with NatsServer(tmp_path / "nats") as server:
        bus = NatsBus(server.url, instance="one", retention_days=1)
        await bus.start()
        try:
            await asyncio.wait_for(bus._ready.wait(), 20)
            events = [
                make_event("shop.order_placed", tenant_id="t1", data={"n": 1}),
                make_event("app.booted", tenant_id=None),
            ]
            stored = [StoredEvent(e.id, e.tenantid, e.type, encode(e)) for e in events]
            await bus.publish_stored(stored)
            await bus.publish_stored(stored[:1])  # the relay again after a crash before marking
            assert bus._js is not None
            sub = await bus._js.pull_subscribe("apprun.>", stream=STREAM)
            msgs = await sub.fetch(batch=3, timeout=2)
            assert [(m.subject, m.data, m.headers and m.headers.get("Nats-Msg-Id")) for m in msgs] == [
                ("apprun.t1.shop.order_placed", stored[0].payload, events[0].id),
                ("apprun.platform.app.booted", stored[1].payload, events[1].id),
            ]
            assert (await bus._js.stream_info(STREAM)).state.messages == 2
        finally:
            await bus.close()
