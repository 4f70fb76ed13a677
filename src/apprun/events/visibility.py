"""Who receives which event: the port the events module asks before handing an event to a reader.

An event about a record (``apprun.record.*``) carries the row, so it may
reach a reader of the event history or of a live stream only if that reader
could read the row through the data API at that moment. Those rules belong
to the data module, which sits above this one in the layering: so events
declares the port and the data module fills it in its ``wire``
(`apprun.data.visibility.RecordVisibility`). A module that emits events
about what it guards decides them the same way, by type prefix
(`Visibilities.decide`: storage's ``apprun.object.*``, by read on the
bucket). Every other event keeps the events module's own rule (``read`` on
``events``, checked when the history is read or the stream opened).

Webhooks and in-process subscribers are not readers in this sense: they act
with the tenant-wide rights of the admin who set them up, and receive every
event of the tenant they ask for (see docs/events.md).
"""

from __future__ import annotations

from typing import Protocol

from apprun.events.envelope import CloudEvent
from apprun.kernel.context import RequestContext

__all__ = ["RECORD_EVENT_PREFIX", "EventVisibility", "RecordsWithheld", "Visibilities"]

RECORD_EVENT_PREFIX = "apprun.record."


class EventVisibility(Protocol):
    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:
        """``event`` as ``ctx`` may receive it now (perhaps reduced), or None when it may not."""
        ...


class RecordsWithheld:
    """Until ``app.py`` wires the data module's rules: record events reach no reader (fail closed)."""

    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:  # noqa: ARG002 - the port's signature
        return None if event.type.startswith(RECORD_EVENT_PREFIX) else event


class Visibilities:
    """The port as the events module asks it: the module that owns an event type decides, by type prefix.

    Data decides ``apprun.record.*`` (`Events.use(visibility=...)`: until it
    does, record events reach no reader); another module that emits events
    about what it guards registers its own prefix in its ``wire``
    (`Events.decide`: storage's ``apprun.object.*`` by read on the bucket).
    An event no prefix claims keeps the events module's own rule alone
    (``read`` on ``events``, checked when the history is read or the stream
    opened). The longest matching prefix wins.
    """

    def __init__(self) -> None:
        self.records: EventVisibility = RecordsWithheld()
        self._by_prefix: list[tuple[str, EventVisibility]] = []

    def decide(self, prefix: str, visibility: EventVisibility) -> None:
        """Let ``visibility`` decide every event whose type starts with ``prefix``; one module per prefix."""
        if not prefix.endswith(".") or prefix == RECORD_EVENT_PREFIX:
            raise ValueError(f"an event type prefix ends with a dot and is not the data module's: {prefix!r}")
        if any(known == prefix for known, _ in self._by_prefix):
            raise ValueError(f"the event type prefix {prefix!r} is decided already")
        self._by_prefix.append((prefix, visibility))
        self._by_prefix.sort(key=lambda item: -len(item[0]))

    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:
        for prefix, visibility in self._by_prefix:
            if event.type.startswith(prefix):
                return await visibility.visible(ctx, event)
        return await self.records.visible(ctx, event)
