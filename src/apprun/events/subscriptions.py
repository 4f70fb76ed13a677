"""Python handlers for events, with exactly-once effects on the database.

Register a handler with the decorator; apprun runs it as a durable consumer
(every process runs it; the bus shares the events between them)::

    @subscribe("apprun.record.created", collection="orders", max_deliver=5)
    async def on_order(event: CloudEvent, ctx: HandlerContext) -> None:
        await ctx.conn.execute("INSERT INTO …", …)

Delivery is at least once; handling is exactly once. The runner takes the
events waiting for a subscriber in batches (up to ``EVENTS_CONSUMER_BATCH``)
and handles a batch in one transaction: one statement records
``(consumer, event id)`` in ``apprun_event_processed`` for all of them and
says which are new; the handler is called for each new one, in the bus's
order, with the transaction's connection; the transaction commits, and only
then is each event acknowledged. An event processed before is not handed to
the handler again. Each handler runs under a savepoint of its own (opened at
its first statement): if it raises (or outlives ``ack_wait``), what it wrote
and its marker are rolled back, the rest of the batch goes on, and that event
is redelivered after a backoff. After ``max_deliver`` failed deliveries the
event goes to the dead-letter subject ``apprun.<tenant>.deadletter`` with the
reason, and is not delivered again. If the batch's transaction fails as a
whole, its events are handled again one transaction each. Side effects
outside ``ctx.conn`` (an HTTP call, a mail) are not covered by the
transaction: make them idempotent by event id.

Keyword filters (``collection="orders"``) compare with the event's
extension attributes or the top-level keys of its ``data``; events that do
not match are acknowledged without calling the handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from apprun.events.bus import ConsumerSpec, Delivery, EventBus
from apprun.events.envelope import CloudEvent
from apprun.kernel import tracing
from apprun.kernel.db import Connection, Database, Row
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow

__all__ = ["DEFAULT_REGISTRY", "HandlerContext", "Registry", "Subscriber", "subscribe"]

_log = get_logger("apprun.events.subscriber")
EventHandler = Callable[[CloudEvent, "HandlerContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler gets besides the event."""

    #: The batch's transaction, under this event's own savepoint: write here and the write is exactly-once.
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


#: Per dialect: mark a batch's events processed (the new ones come back), and take marks back.
_MARK = {
    "postgres": "INSERT INTO apprun_event_processed (consumer, event_id, processed_at) "
    "SELECT $1, unnest($3::text[]), $2 ON CONFLICT DO NOTHING RETURNING event_id",
    # WHERE true: SQLite's parser needs it between INSERT … SELECT and ON CONFLICT.
    "sqlite": "INSERT INTO apprun_event_processed (consumer, event_id, processed_at) "
    "SELECT $1, value, $2 FROM json_each($3) WHERE true ON CONFLICT DO NOTHING RETURNING event_id",
}
_UNMARK = {
    "postgres": "DELETE FROM apprun_event_processed WHERE consumer = $1 AND event_id = ANY($2::text[])",
    "sqlite": "DELETE FROM apprun_event_processed WHERE consumer = $1 "
    "AND event_id IN (SELECT value FROM json_each($2))",
}


def _id_list(dialect: str, ids: list[str]) -> Any:
    return ids if dialect == "postgres" else json.dumps(ids)


class _EventConnection:
    """A handler's view of the batch's transaction: its work under a savepoint of its own.

    The savepoint is opened at the handler's first statement (a handler that
    writes nothing costs no statement); `close` releases it, or rolls back to
    it when the handler failed. ``on_commit`` callbacks reach the transaction
    only if the handler succeeded, and ``tx_state`` is put back if it failed.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect
        self.tx_state = conn.tx_state
        self._state = dict(conn.tx_state)
        self._savepoint: AbstractAsyncContextManager[None] | None = None
        self._callbacks: list[Callable[[], None]] = []

    async def _open(self) -> Connection:
        if self._savepoint is None:
            savepoint = self._conn.savepoint()
            await savepoint.__aenter__()
            self._savepoint = savepoint
        return self._conn

    async def execute(self, sql: str, *args: Any) -> int:
        return await (await self._open()).execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await (await self._open()).executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await (await self._open()).fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await (await self._open()).fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await (await self._open()).fetchval(sql, *args)

    async def execute_at_commit(self, sql: str, *args: Any) -> None:
        await (await self._open()).execute_at_commit(sql, *args)

    async def notify(self, channel: str) -> None:
        await (await self._open()).notify(channel)

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    @asynccontextmanager
    async def _nested(self) -> AsyncIterator[None]:
        async with (await self._open()).savepoint():
            yield

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        return self._nested()

    async def close(self, error: BaseException | None) -> None:
        """Keep the handler's work (``error`` None) or undo it; raises if the database cannot do either."""
        savepoint, self._savepoint = self._savepoint, None
        if error is None:
            if savepoint is not None:
                await savepoint.__aexit__(None, None, None)
            for callback in self._callbacks:
                self._conn.on_commit(callback)
            return
        if savepoint is not None:
            await savepoint.__aexit__(type(error), error, error.__traceback__)
        self.tx_state.clear()
        self.tx_state.update(self._state)


class Runner:
    """Connects subscribers to the bus with de-duplication and dead letters."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        default_ack_wait: float,
        default_max_deliver: int,
        batch: int = 100,
        metrics: Any = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.default_ack_wait = default_ack_wait
        self.default_max_deliver = default_max_deliver
        self.batch = batch
        self.metrics = metrics

    async def start(self, subscriber: Subscriber) -> None:
        spec = ConsumerSpec(
            name=subscriber.name,
            types=subscriber.types,
            ack_wait=subscriber.ack_wait or self.default_ack_wait,
            max_deliver=subscriber.max_deliver or self.default_max_deliver,
            batch=self.batch,
        )

        async def handle(batch: Sequence[Delivery]) -> None:
            await self._handle(subscriber, spec, batch)

        await self.bus.consume(spec, handle)

    def _count(self, consumer: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.delivered(consumer, outcome)

    async def _handle(self, subscriber: Subscriber, spec: ConsumerSpec, batch: Sequence[Delivery]) -> None:
        todo: list[Delivery] = []
        for delivery in batch:
            event = delivery.event
            if not subscriber.matches(event) or (
                subscriber.accepts is not None and not await subscriber.accepts(event)
            ):
                await delivery.ack()
                self._count(spec.name, "skipped")
            else:
                todo.append(delivery)
        while todo:
            todo = await self._transaction(subscriber, spec, todo)

    async def _transaction(self, subscriber: Subscriber, spec: ConsumerSpec, todo: list[Delivery]) -> list[Delivery]:
        """Handle ``todo`` in one transaction, then settle each; returns those left for the next one.

        The batch is cut short after half of ``ack_wait``, so that no delivery
        waits for its acknowledgement past ``ack_wait`` (the bus would hand it
        to another process meanwhile).
        """
        started = time.monotonic()
        done: list[tuple[Delivery, str | BaseException]] = []
        rest: list[Delivery] = []
        try:
            async with self.db.transaction() as conn:
                fresh = await self._mark(conn, spec.name, todo)
                unmark: list[str] = []
                for i, delivery in enumerate(todo):
                    if i and time.monotonic() - started > spec.ack_wait / 2:
                        rest = todo[i:]
                        unmark += [d.event.id for d in rest if d.event.id in fresh]
                        break
                    if delivery.event.id not in fresh:
                        done.append((delivery, "duplicate"))
                        continue
                    fresh.discard(delivery.event.id)  # a second copy in this batch is a duplicate
                    error = await self._run(subscriber, spec, conn, delivery)
                    if error is not None:
                        unmark.append(delivery.event.id)
                    done.append((delivery, error or "ok"))
                if unmark:
                    await conn.execute(_UNMARK[conn.dialect], spec.name, _id_list(conn.dialect, unmark))
        except Exception as exc:  # noqa: BLE001 - the batch as a whole failed: each event on its own
            if len(todo) == 1:
                self._count(spec.name, await self._failed(spec, todo[0], exc))
                return []
            _log.warning("event_batch_failed", consumer=spec.name, events=len(todo), reason=_reason(exc))
            for delivery in todo:
                await self._transaction(subscriber, spec, [delivery])
            return []
        for delivery, outcome in done:  # committed: now each is settled
            if isinstance(outcome, BaseException):
                self._count(spec.name, await self._failed(spec, delivery, outcome))
            else:
                await delivery.ack()
                self._count(spec.name, outcome)
        return rest

    @staticmethod
    async def _mark(conn: Connection, consumer: str, todo: list[Delivery]) -> set[str]:
        """Record the batch's events as processed by ``consumer``; the ids that were not already."""
        # Sorted: two processes marking overlapping batches take the row locks in the same order.
        ids = sorted({d.event.id for d in todo})
        rows = await conn.fetch(_MARK[conn.dialect], consumer, utcnow(), _id_list(conn.dialect, ids))
        return {r["event_id"] for r in rows}

    async def _run(
        self, subscriber: Subscriber, spec: ConsumerSpec, conn: Connection, delivery: Delivery
    ) -> BaseException | None:
        """Call the handler for one new event under its savepoint; the error it failed with, if it did."""
        event = delivery.event
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
        handler_conn = _EventConnection(conn)
        error: BaseException | None = None
        try:
            try:
                async with asyncio.timeout(spec.ack_wait):
                    await subscriber.handler(event, HandlerContext(handler_conn, spec.name, delivery.attempt))
            except Exception as exc:  # noqa: BLE001 - any handler failure is a failed delivery
                error = exc
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            await handler_conn.close(error)
        finally:
            if span is not None:
                span.end()
            if token is not None:
                otel_context.detach(token)
        return error

    async def _failed(self, spec: ConsumerSpec, delivery: Delivery, exc: BaseException) -> str:
        event = delivery.event
        reason = _reason(exc)
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


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
