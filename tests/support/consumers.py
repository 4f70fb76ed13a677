"""A subscriber's JetStream consumer, seen from a test: what it delivered, and when it is done."""

from __future__ import annotations

import nats

from apprun.events.nats_bus import STREAM, durable_name
from apprun.kernel.db import Database
from tests.support.outbox import unpublished
from tests.support.polling import eventually

__all__ = ["consumer_state", "settled"]


async def consumer_state(nats_url: str, consumer: str) -> tuple[int, int, int]:
    """(delivered, pending, ack-pending) of the subscriber's durable JetStream consumer.

    0 if the consumer does not exist yet (apprun creates it at start).
    """
    nc = await nats.connect(nats_url)
    try:
        try:
            info = await nc.jetstream().consumer_info(STREAM, durable_name(consumer))
        except nats.js.errors.NotFoundError:
            return 0, 0, 0
        return int(info.delivered.consumer_seq or 0), int(info.num_pending or 0), int(info.num_ack_pending or 0)
    finally:
        await nc.close()


async def settled(db: Database, nats_url: str, consumer: str, timeout: float = 60.0) -> None:
    """Wait until no delivery to ``consumer`` can still happen, a duplicate included.

    The outbox has nothing left to publish, and the consumer has nothing left
    to deliver nor any delivery waiting for its ack (which is what a
    redelivery would come from). Only then is "handled exactly once" a fact
    rather than a snapshot.
    """

    async def outbox_empty() -> bool:
        return await unpublished(db) == 0

    async def idle() -> bool:
        _, pending, ack_pending = await consumer_state(nats_url, consumer)
        return pending == 0 and ack_pending == 0

    await eventually(outbox_empty, "the outbox published", timeout=timeout)
    await eventually(idle, f"consumer {consumer} with nothing pending or unacked", timeout=timeout)
