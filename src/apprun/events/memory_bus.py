"""The in-process bus: one process, no engine, the same consumer semantics.

Events live in memory only: an event the relay has published but a consumer
has not acked yet is lost if the process stops. The outbox still holds the
event, so nothing is lost for the event history, the live tail or webhooks
created later — but use NATS (``PUBSUB_BACKEND=nats``) when handlers must
survive restarts, or when several processes serve the same deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from apprun.events.bus import ConsumerSpec, Handler, StoredEvent, type_matches
from apprun.events.envelope import CloudEvent, decode
from apprun.kernel.logging import get_logger

__all__ = ["DeadLetter", "MemoryBus"]

_log = get_logger("apprun.events.memory")
_DEDUP_WINDOW = 120.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: CloudEvent
    consumer: str
    reason: str
    attempts: int


@dataclass(eq=False)
class _MemoryDelivery:
    event: CloudEvent
    attempt: int
    consumer: _Consumer
    settled: bool = False

    async def ack(self) -> None:
        self.settled = True

    async def nak(self, delay: float) -> None:
        if not self.settled:
            self.settled = True
            self.consumer.redeliver(self.event, self.attempt + 1, delay)

    async def term(self) -> None:
        self.settled = True


@dataclass(eq=False)
class _Consumer:
    spec: ConsumerSpec
    handler: Handler
    queue: asyncio.Queue[tuple[CloudEvent, int]] = field(default_factory=asyncio.Queue)
    timers: set[asyncio.TimerHandle] = field(default_factory=set)

    def redeliver(self, event: CloudEvent, attempt: int, delay: float) -> None:
        if attempt > self.spec.max_deliver:
            _log.warning("delivery_exhausted", consumer=self.spec.name, event_id=event.id)
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, delay), self.queue.put_nowait, (event, attempt))
        self.timers.add(handle)

    async def run(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < self.spec.batch and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            batch = [_MemoryDelivery(event=event, attempt=attempt, consumer=self) for event, attempt in waiting]
            try:
                # AckWait runs for each delivery; for the batch as a whole, a backstop.
                async with asyncio.timeout(self.spec.ack_wait * len(batch)):
                    await self.handler(batch)
            except TimeoutError:
                _log.warning("ack_wait_exceeded", consumer=self.spec.name, event_id=batch[0].event.id)
            except Exception:  # noqa: BLE001 - a handler bug is a failed delivery, not a dead consumer
                _log.exception("consumer_crashed", consumer=self.spec.name, event_id=batch[0].event.id)
            for delivery in batch:
                if not delivery.settled:  # neither acked nor naked in time: redeliver, as AckWait would
                    self.redeliver(delivery.event, delivery.attempt + 1, 0)


class MemoryBus:
    name = "memory"

    def __init__(self) -> None:
        self._consumers: list[_Consumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.dead_letters: list[DeadLetter] = []
        self.published: int = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:
            for timer in consumer.timers:
                timer.cancel()
        self._tasks.clear()

    def _duplicate(self, event_id: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - _DEDUP_WINDOW:
            self._seen.popitem(last=False)
        if event_id in self._seen:
            return True
        self._seen[event_id] = now
        return False

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            if self._duplicate(event.id):
                continue
            self.published += 1
            for consumer in self._consumers:
                if type_matches(consumer.spec.types, event.type):
                    consumer.queue.put_nowait((event, 1))

    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        await self.publish([decode(e.payload) for e in events])

    async def dead_letter(self, event: CloudEvent, *, consumer: str, reason: str, attempts: int) -> None:
        self.dead_letters.append(DeadLetter(event=event, consumer=consumer, reason=reason, attempts=attempts))

    async def consume(self, spec: ConsumerSpec, handler: Handler) -> None:
        consumer = _Consumer(spec=spec, handler=handler)
        self._consumers.append(consumer)
        self._tasks.append(asyncio.create_task(consumer.run(), name=f"apprun-consumer-{spec.name}"))

    async def check(self) -> str:
        return f"in-process, {self.published} events published"
