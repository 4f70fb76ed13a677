"""Who receives which event: the port the events module asks before handing an event to a reader.

An event about a record (``apprun.record.*``) carries the row, so it may
reach a reader of the event history or of a live stream only if that reader
could read the row through the data API at that moment. Those rules belong
to the data module, which sits above this one in the layering: so events
declares the port and ``app.py`` wires the data module's implementation
(`apprun.data.visibility.RecordVisibility`). Every other event keeps the
events module's own rule (``read`` on ``events``, checked when the history is
read or the stream opened).

Webhooks and in-process subscribers are not readers in this sense: they act
with the tenant-wide rights of the admin who set them up, and receive every
event of the tenant they ask for (see docs/events.md).
"""

from __future__ import annotations

from typing import Protocol

from apprun.events.envelope import CloudEvent
from apprun.kernel.context import RequestContext

__all__ = ["RECORD_EVENT_PREFIX", "EventVisibility", "RecordsWithheld"]

RECORD_EVENT_PREFIX = "apprun.record."


class EventVisibility(Protocol):
    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:
        """``event`` as ``ctx`` may receive it now (perhaps reduced), or None when it may not."""
        ...


class RecordsWithheld:
    """Until ``app.py`` wires the data module's rules: record events reach no reader (fail closed)."""

    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:  # noqa: ARG002 - the port's signature
        return None if event.type.startswith(RECORD_EVENT_PREFIX) else event
