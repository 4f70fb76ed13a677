"""The bus port: where the relay publishes and where consumers read.

Two adapters: `MemoryBus` (one process, the default) and `NatsBus` (NATS
JetStream). Both give the same semantics to a consumer: each event is
delivered until it is acked; a nak redelivers it after a delay; the delivery
count grows with each try; a consumer that gives up calls `term` after
sending the event to the dead-letter subject. Deliveries reach a consumer in
batches: whatever is waiting, up to ``ConsumerSpec.batch``, in one call. Publishing is idempotent by
event id within the bus's de-duplication window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from apprun.events.envelope import CloudEvent
from apprun.kernel.errors import ServiceUnavailable

__all__ = ["BusUnavailable", "ConsumerSpec", "Delivery", "EventBus", "Handler", "StoredEvent"]


class StoredEvent(NamedTuple):
    """An event as the outbox holds it: the encoded CloudEvent, with the columns a bus routes it by.

    ``id``, ``tenant_id`` and ``type`` are the event's own ``id``, ``tenantid``
    and ``type`` (`apprun.events.outbox.emit` writes them from the event).
    """

    id: str
    tenant_id: str | None
    type: str
    #: `apprun.events.envelope.encode` of the event.
    payload: bytes


class BusUnavailable(ServiceUnavailable):
    """The bus did not take the events; the relay retries later."""

    default_code = "events.bus_unavailable"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: survives restarts, shared by every process running it."""

    name: str
    #: Event types to receive; an empty tuple means every type.
    types: tuple[str, ...]
    ack_wait: float = 30.0
    max_deliver: int = 5
    #: Deliveries handed to the handler at once, at most (fewer when fewer are waiting).
    batch: int = 100


class Delivery(Protocol):
    """One delivery of one event to one consumer."""

    event: CloudEvent
    #: 1 for the first delivery, 2 for the first redelivery …
    attempt: int

    async def ack(self) -> None: ...

    async def nak(self, delay: float) -> None: ...

    async def term(self) -> None: ...


#: Takes the deliveries waiting for a consumer, in the bus's order (at most ``ConsumerSpec.batch``),
#: and settles each (ack, nak or term); one left unsettled is delivered again after ``ack_wait``.
Handler = Callable[[Sequence[Delivery]], Awaitable[None]]


class EventBus(Protocol):
    name: str

    async def start(self) -> None:
        """Begin connecting; never raises for an unreachable bus (health reports it)."""
        ...

    async def close(self) -> None: ...

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Hand over events in order; returns once all are stored, else raises `BusUnavailable`."""
        ...

    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        """`publish` events already encoded (the relay's: the outbox's bytes go out as they are)."""
        ...

    async def dead_letter(self, event: CloudEvent, *, consumer: str, reason: str, attempts: int) -> None:
        """Park an event a consumer gave up on, on ``apprun.<tenant>.deadletter``."""
        ...

    async def consume(self, spec: ConsumerSpec, handler: Handler) -> None:
        """Start delivering to ``handler`` in the background, until `close`."""
        ...

    async def check(self) -> str:
        """A health message, or raises when the bus is unusable."""
        ...


def type_matches(spec_types: Sequence[str], event_type: str) -> bool:
    return not spec_types or event_type in spec_types
