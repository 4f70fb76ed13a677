"""NATS JetStream: the bus for real deployments (``PUBSUB_BACKEND=nats``).

- One stream, ``APPRUN``, on ``apprun.>``, file storage, messages kept
  ``EVENTS_RETENTION_DAYS``, a two-minute de-duplication window.
- Subject ``apprun.<tenant>.<type>`` (``platform`` when no tenant);
  ``Nats-Msg-Id`` is the event id, so the relay re-publishing after a crash
  (published, not yet marked) is dropped by JetStream as a duplicate.
- Publishes are pipelined (``publish_async``) and the relay waits for every
  ack before marking rows published.
- Consumers are durable pull consumers with explicit acks, ``AckWait`` and
  ``MaxDeliver``; every apprun process runs each consumer, and JetStream
  shares the messages between them. A consumer fetches the next message and
  whatever waits behind it, up to ``EVENTS_CONSUMER_BATCH``, in one batch.
- The connection reconnects by itself forever; if NATS is down at start,
  apprun starts anyway, keeps trying, and the health check says ``bus`` DOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from apprun.events.bus import BusUnavailable, ConsumerSpec, Handler, StoredEvent, type_matches
from apprun.events.envelope import PLATFORM_TOKEN, CloudEvent, decode, encode, subject_of
from apprun.kernel.logging import get_logger
from apprun.kernel.runtime import stop_step

__all__ = ["STREAM", "NatsBus", "durable_name"]

STREAM = "APPRUN"
#: Seconds closing may wait for the consumers to stop, then for the connection to close.
_CLOSE_TIMEOUT = 5.0
#: Seconds a fetch may wait for more messages behind the first (only when none are waiting).
_TOP_UP = 0.005
_log = get_logger("apprun.events.nats")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def durable_name(consumer: str) -> str:
    """The JetStream durable consumer of the subscriber named ``consumer``."""
    return "apprun-" + _SAFE.sub("_", consumer)


class _NatsDelivery:
    def __init__(self, msg: Msg, event: CloudEvent) -> None:
        self._msg = msg
        self.event = event
        self.attempt = int(msg.metadata.num_delivered or 1)

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float) -> None:
        await self._msg.nak(delay=delay)

    async def term(self) -> None:
        await self._msg.term()


class _Tail:
    """A live tail's core NATS subscriptions as an async iterator of events."""

    def __init__(self, queue: asyncio.Queue[Msg], subs: list[Any]) -> None:
        self._queue = queue
        self._subs = subs

    def __aiter__(self) -> _Tail:
        return self

    async def __anext__(self) -> CloudEvent:
        while True:
            msg = await self._queue.get()
            if msg.subject.endswith(".deadletter"):
                continue
            with contextlib.suppress(ValueError, TypeError):
                return decode(msg.data)

    async def aclose(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


class NatsBus:
    name = "nats"

    def __init__(self, servers: str, *, instance: str, retention_days: int, publish_timeout: float = 10.0) -> None:
        self.servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.instance = instance
        self.retention = retention_days * 86400.0
        self.publish_timeout = publish_timeout
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- connection --------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_forever(), name="apprun-nats-connect"))

    async def _connect_forever(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                nc = await nats.connect(
                    servers=self.servers,
                    name=f"apprun@{self.instance}",
                    connect_timeout=2,
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
                self._nc, self._js = nc, nc.jetstream(timeout=self.publish_timeout)
                await self._ensure_stream()
                self._ready.set()
                _log.info("bus_connected", servers=self.servers)
                return
            except (OSError, TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                _log.warning("bus_connect_failed", servers=self.servers, error=f"{type(exc).__name__}: {exc}")
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                    self._nc = self._js = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _ensure_stream(self) -> None:
        if self._js is None:  # pragma: no cover - called right after connecting
            return
        config = api.StreamConfig(
            name=STREAM,
            subjects=["apprun.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.retention,
            duplicate_window=120.0,
        )
        try:
            await self._js.stream_info(STREAM)
            await self._js.update_stream(config)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(config)

    async def _on_error(self, exc: Exception) -> None:
        _log.warning("bus_error", error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnect(self) -> None:
        _log.warning("bus_disconnected")

    async def _on_reconnect(self) -> None:
        _log.info("bus_reconnected")
        # A restarted server may have lost its stream (no persistent store).
        with contextlib.suppress(Exception):
            await self._ensure_stream()

    def _context(self) -> JetStreamContext:
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise BusUnavailable()
        return self._js

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a consumer stuck in the client library must not hold the shutdown.
            stopped = asyncio.gather(*self._tasks, return_exceptions=True)
            await stop_step(stopped, "events.bus.consumers", limit_s=_CLOSE_TIMEOUT)
        self._tasks.clear()
        if self._nc is not None:
            # Not drain(): every publish was already acked and the consumers are
            # stopped; drain would wait out unacked fetches (up to 30 s).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._nc.close()
            self._nc = self._js = None

    # --- publishing --------------------------------------------------------
    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await self.publish_stored([StoredEvent(e.id, e.tenantid, e.type, encode(e)) for e in events])

    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        js = self._context()
        try:
            # One deadline for handing over and for the acks. No wait_stall: nats-py
            # would wrap each message's turn in asyncio.wait_for, a task per message.
            async with asyncio.timeout(self.publish_timeout):
                futures = [
                    await js.publish_async(subject_of(e.tenant_id, e.type), e.payload, headers={"Nats-Msg-Id": e.id})
                    for e in events
                ]
                acks = await asyncio.gather(*futures)
        except (TimeoutError, OSError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable() from exc
        for ack in acks:
            if ack.stream != STREAM:  # pragma: no cover - another stream captured apprun.>
                raise BusUnavailable()

    async def dead_letter(self, event: CloudEvent, *, consumer: str, reason: str, attempts: int) -> None:
        js = self._context()
        headers = {
            "Nats-Msg-Id": f"{event.id}:{consumer}:dead",
            "Apprun-Consumer": consumer,
            "Apprun-Reason": " ".join(reason.split())[:500],
            "Apprun-Deliveries": str(attempts),
            "Apprun-Event-Type": event.type,
        }
        try:
            await js.publish(f"apprun.{event.tenantid or PLATFORM_TOKEN}.deadletter", encode(event), headers=headers)
        except (TimeoutError, OSError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable() from exc

    # --- consuming ---------------------------------------------------------
    async def consume(self, spec: ConsumerSpec, handler: Handler) -> None:
        self._tasks.append(asyncio.create_task(self._consume(spec, handler), name=f"apprun-consumer-{spec.name}"))

    async def _subscribe(self, spec: ConsumerSpec) -> Any:
        js = self._context()
        durable = durable_name(spec.name)
        # One type: let the server filter. Several or all: filter here (NATS 2.9
        # servers do not know filter_subjects).
        subject = f"apprun.*.{spec.types[0]}" if len(spec.types) == 1 else "apprun.>"
        config = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver,
            deliver_policy=api.DeliverPolicy.ALL,
            max_ack_pending=1000,
        )
        # Create, or bring up to date a durable an earlier release left with
        # other types or limits (pull_subscribe would reuse it as it was, and a
        # subscriber whose types changed would never see its new ones).
        await js.add_consumer(STREAM, config)
        return await js.pull_subscribe_bind(durable=durable, stream=STREAM)

    async def _consume(self, spec: ConsumerSpec, handler: Handler) -> None:
        while not self._closing:
            await self._ready.wait()
            try:
                sub = await self._subscribe(spec)
            except (BusUnavailable, TimeoutError, OSError, nats.errors.Error, nats.js.errors.Error) as exc:
                _log.warning("consumer_subscribe_failed", consumer=spec.name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
                continue
            while not self._closing:
                try:
                    msgs = await self._fetch(sub, spec.batch)
                except TimeoutError:
                    continue
                except (OSError, nats.errors.Error, nats.js.errors.Error) as exc:
                    _log.warning("consumer_fetch_failed", consumer=spec.name, error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(1.0)
                    break  # subscribe again (the consumer may be gone after a server restart)
                batch = [d for d in [await self._delivery(spec, msg) for msg in msgs] if d is not None]
                if not batch:
                    continue
                try:
                    await handler(batch)
                except Exception:  # noqa: BLE001 - the runner settles deliveries; this is a last guard
                    _log.exception("consumer_crashed", consumer=spec.name, event_id=batch[0].event.id)

    @staticmethod
    async def _fetch(sub: Any, batch: int) -> list[Msg]:
        """The next message as soon as there is one, with those already waiting behind it, up to ``batch``.

        Not one ``fetch(batch)``: once its first message is in, nats-py waits
        for the batch to fill up until the timeout, and a lone event would wait
        a second. Raises `TimeoutError` after a second without messages.
        """
        msgs: list[Msg] = await sub.fetch(batch=1, timeout=1.0)
        if batch > 1:
            # Answered at once from what the server holds; lingers `_TOP_UP` at most when it holds nothing.
            with contextlib.suppress(TimeoutError):
                msgs += await sub.fetch(batch=batch - 1, timeout=_TOP_UP)
        return msgs

    async def _delivery(self, spec: ConsumerSpec, msg: Msg) -> _NatsDelivery | None:
        """The delivery of ``msg`` to the consumer, or None once it is settled here (not an event of its)."""
        if msg.subject.endswith(".deadletter"):
            await msg.ack()
            return None
        try:
            event = decode(msg.data)
        except (ValueError, TypeError):
            _log.error("undecodable_event", subject=msg.subject)
            await msg.term()
            return None
        if not type_matches(spec.types, event.type):
            await msg.ack()
            return None
        return _NatsDelivery(msg, event)

    # --- live tail ---------------------------------------------------------
    async def tail(self, tenant_id: str, types: tuple[str, ...]) -> AsyncIterator[CloudEvent]:
        """Subscribe now (core NATS, no JetStream state), then: what is published from here on.

        The subscription exists when this returns, so a caller that publishes
        next cannot miss its own event; ``aclose()`` on the result unsubscribes.
        """
        if self._nc is None or not self._nc.is_connected:
            raise BusUnavailable()
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=1000)

        async def on_msg(msg: Msg) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses events, never memory
                queue.put_nowait(msg)

        subjects = [f"apprun.{tenant_id}.{t}" for t in types] or [f"apprun.{tenant_id}.>"]
        subs = [await self._nc.subscribe(s, cb=on_msg) for s in subjects]
        tail = _Tail(queue, subs)
        try:
            # A round trip: the server has the subscriptions, whichever process publishes next.
            await self._nc.flush(timeout=max(1, int(self.publish_timeout)))
        except (TimeoutError, nats.errors.Error) as exc:
            await tail.aclose()
            raise BusUnavailable() from exc
        return tail

    async def check(self) -> str:
        js = self._context()
        info = await js.stream_info(STREAM)
        return f"JetStream stream {STREAM}: {info.state.messages} messages"
