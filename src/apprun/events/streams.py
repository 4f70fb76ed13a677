"""A live event stream for one reader: filtered by what it may see, ended with its session.

A stream outlives the request that opened it by hours. So, rather than trust
the rights it had at the start:

- each event is shown to the reader's `EventVisibility` when it arrives, with
  the reader's rights of that moment (a record event reaches the reader only
  if the data API would show it the row);
- every ``EVENTS_STREAM_RECHECK_SECONDS`` the stream asks whether the reader
  still holds (the session is not revoked or expired, the user still a member
  of the tenant, still allowed ``read`` on ``events`` …) and, if not, ends
  with a `StreamClosed` saying why.

An event that arrives between the end of a session and the next check is
still shown: the interval bounds that window.

The session check is a port (`SessionCheck`): the auth module, which sits
above events in the layering, implements it and ``app.py`` wires it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from apprun.events.envelope import CloudEvent
from apprun.events.visibility import EventVisibility
from apprun.kernel.context import RequestContext

__all__ = ["STREAM_CLOSED", "LiveStream", "SessionCheck", "StreamClosed"]

#: The SSE event name of a stream's last message; its data is ``{"reason": <error code>}``.
STREAM_CLOSED = "apprun.stream.closed"


class SessionCheck(Protocol):
    async def recheck(self, ctx: RequestContext) -> str | None:
        """None while the credential behind ``ctx`` still holds, else the stable code of why not."""
        ...


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The stream's end: its reader no longer holds, for ``reason`` (an error code)."""

    reason: str


class LiveStream:
    """The events a reader may see, from a source that yields every event of its tenant."""

    def __init__(
        self,
        ctx: RequestContext,
        source: AsyncIterator[CloudEvent],
        *,
        visibility: EventVisibility,
        recheck: Callable[[], Awaitable[str | None]],
        recheck_every: float,
    ) -> None:
        self.ctx = ctx
        self._source = source
        self._visibility = visibility
        self._recheck = recheck
        self._every = recheck_every
        self._check_at = time.monotonic() + recheck_every
        self._pending: asyncio.Future[CloudEvent] | None = None

    async def next(self, idle: float) -> CloudEvent | StreamClosed | None:
        """The next event the reader may see, or `StreamClosed` when the reader no longer holds.

        None after ``idle`` seconds without either: the caller sends a
        keep-alive, and the stream goes on.
        """
        deadline = time.monotonic() + idle
        while True:
            now = time.monotonic()
            if now >= self._check_at:
                reason = await self._recheck()
                if reason is not None:
                    return StreamClosed(reason)
                now = time.monotonic()
                self._check_at = now + self._every
            if now >= deadline:
                return None
            if self._pending is None:
                self._pending = asyncio.ensure_future(anext(self._source))
            done, _ = await asyncio.wait({self._pending}, timeout=min(deadline, self._check_at) - now)
            if not done:
                continue
            event = self._pending.result()
            self._pending = None
            shown = await self._visibility.visible(self.ctx, event)
            if shown is not None:
                return shown

    async def close(self) -> None:
        """Stop waiting and release the source (its bus subscription)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            # asyncio.wait, not await: this task's own cancellation must not be swallowed.
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # retrieved: a bus error at the end is not worth a warning
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()
