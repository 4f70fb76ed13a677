"""Python handlers for events, with exactly-once effects on the database.

Register a handler with the decorator; apprun runs it as a durable consumer
(every process runs it; the bus shares the events between them)::

    @subscribe("apprun.record.created", collection="orders", max_deliver=5)
    async def on_order(event: CloudEvent, ctx: HandlerContext) -> None:
        await ctx.conn.execute("INSERT INTO …", …)

Delivery is at least once; handling is exactly once. For each delivery the
runner opens a transaction, records ``(consumer, event id)`` in
``apprun_event_processed`` and calls the handler with that transaction's
connection: if the event was processed before, the handler is not called; if
the handler raises (or outlives ``ack_wait``), the transaction — the marker
and whatever the handler wrote — rolls back and the event is redelivered
after a backoff. After ``max_deliver`` failed deliveries the event goes to
the dead-letter subject ``apprun.<tenant>.deadletter`` with the reason, and
is not delivered again. Side effects outside ``ctx.conn`` (an HTTP call, a
mail) are not covered by the transaction: make them idempotent by event id.

Keyword filters (``collection="orders"``) compare with the event's
extension attributes or the top-level keys of its ``data``; events that do
not match are acknowledged without calling the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from apprun.events.bus import ConsumerSpec, Delivery, EventBus
from apprun.events.envelope import CloudEvent
from apprun.kernel import tracing
from apprun.kernel.db import Connection, Database
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow

__all__ = ["DEFAULT_REGISTRY", "HandlerContext", "Registry", "Subscriber", "subscribe"]

_log = get_logger("apprun.events.subscriber")
EventHandler = Callable[[CloudEvent, "HandlerContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler gets besides the event."""

    #: The delivery's transaction: write here and the write is exactly-once.
    conn: Connection
    consumer: str
    #: 1 on the first delivery.
    attempt: int


@dataclass(frozen=True)
class Subscriber:
    name: str
    types: tuple[str, ...]
    handler: EventHandler
    filters: dict[str, Any] = field(default_factory=dict)
    max_deliver: int | None = None
    ack_wait: float | None = None
    #: A cheap check before the delivery's transaction opens; False acks the
    #: event unhandled (e.g. the webhooks subscriber when a tenant has none).
    accepts: Callable[[CloudEvent], Awaitable[bool]] | None = None

    def matches(self, event: CloudEvent) -> bool:
        data = event.data if isinstance(event.data, dict) else {}
        for key, wanted in self.filters.items():
            have = getattr(event, key, None) if key in ("subject", "tenantid", "source") else data.get(key)
            if have != wanted:
                return False
        return True


class Registry:
    """Handlers known to an app."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}

    def subscribe(
        self,
        *types: str,
        name: str | None = None,
        max_deliver: int | None = None,
        ack_wait: float | None = None,
        **filters: Any,
    ) -> Callable[[EventHandler], EventHandler]:
        def register(handler: EventHandler) -> EventHandler:
            consumer = name or f"{handler.__module__}.{handler.__qualname__}"
            if consumer in self.subscribers:
                raise ValueError(f"two event handlers are called {consumer!r}; pass name=")
            self.subscribers[consumer] = Subscriber(
                name=consumer,
                types=tuple(types),
                handler=handler,
                filters=filters,
                max_deliver=max_deliver,
                ack_wait=ack_wait,
            )
            return handler

        return register

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber.name] = subscriber


#: Where ``@subscribe`` puts handlers; every app started in the process runs them.
DEFAULT_REGISTRY = Registry()
subscribe = DEFAULT_REGISTRY.subscribe


def _backoff(attempt: int) -> float:
    return float(min(2 ** (attempt - 1), 60))


class Runner:
    """Connects subscribers to the bus with de-duplication and dead letters."""

    def __init__(
        self, db: Database, bus: EventBus, *, default_ack_wait: float, default_max_deliver: int, metrics: Any = None
    ) -> None:
        self.db = db
        self.bus = bus
        self.default_ack_wait = default_ack_wait
        self.default_max_deliver = default_max_deliver
        self.metrics = metrics

    async def start(self, subscriber: Subscriber) -> None:
        spec = ConsumerSpec(
            name=subscriber.name,
            types=subscriber.types,
            ack_wait=subscriber.ack_wait or self.default_ack_wait,
            max_deliver=subscriber.max_deliver or self.default_max_deliver,
        )

        async def handle(delivery: Delivery) -> None:
            await self._handle(subscriber, spec, delivery)

        await self.bus.consume(spec, handle)

    def _count(self, consumer: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.delivered(consumer, outcome)

    async def _handle(self, subscriber: Subscriber, spec: ConsumerSpec, delivery: Delivery) -> None:
        event = delivery.event
        if not subscriber.matches(event) or (subscriber.accepts is not None and not await subscriber.accepts(event)):
            await delivery.ack()
            self._count(spec.name, "skipped")
            return
        token = None
        span = None
        if tracing.enabled():
            # The handler's span joins the trace of the request that emitted the event.
            parent = propagate.extract({"traceparent": event.traceparent} if event.traceparent else {})
            span = tracing.tracer().start_span(
                f"event {event.type}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": self.bus.name,
                    "messaging.message.id": event.id,
                    "apprun.consumer": spec.name,
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            outcome = await self._run_once(subscriber, spec, delivery)
        except Exception as exc:  # noqa: BLE001 - any handler failure is a failed delivery
            outcome = await self._failed(spec, delivery, exc)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        finally:
            if span is not None:
                span.end()
            if token is not None:
                otel_context.detach(token)
        self._count(spec.name, outcome)

    async def _run_once(self, subscriber: Subscriber, spec: ConsumerSpec, delivery: Delivery) -> str:
        event = delivery.event
        async with self.db.transaction() as conn:
            fresh = await conn.execute(
                "INSERT INTO apprun_event_processed (consumer, event_id, processed_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                spec.name,
                event.id,
                utcnow(),
            )
            if fresh == 0:
                outcome = "duplicate"
            else:
                ctx = HandlerContext(conn=conn, consumer=spec.name, attempt=delivery.attempt)
                async with asyncio.timeout(spec.ack_wait):
                    await subscriber.handler(event, ctx)
                outcome = "ok"
        await delivery.ack()
        return outcome

    async def _failed(self, spec: ConsumerSpec, delivery: Delivery, exc: BaseException) -> str:
        event = delivery.event
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if delivery.attempt >= spec.max_deliver:
            _log.error(
                "event_dead_lettered", consumer=spec.name, event_id=event.id, attempts=delivery.attempt, reason=reason
            )
            try:
                await self.bus.dead_letter(event, consumer=spec.name, reason=reason, attempts=delivery.attempt)
            except Exception:  # noqa: BLE001 - keep it for redelivery rather than lose it
                _log.exception("dead_letter_failed", consumer=spec.name, event_id=event.id)
                await delivery.nak(_backoff(delivery.attempt))
                return "retry"
            await delivery.term()
            return "dead_letter"
        _log.warning(
            "event_handler_failed", consumer=spec.name, event_id=event.id, attempt=delivery.attempt, reason=reason
        )
        await delivery.nak(_backoff(delivery.attempt))
        return "retry"
