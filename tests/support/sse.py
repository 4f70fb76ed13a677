"""Reading apprun's live event stream (Server-Sent Events) from a real server in tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Message", "SseReader", "event_stream"]

STREAM_PATH = "/api/v1/events/stream"


@dataclass(frozen=True)
class Message:
    """One SSE message: a comment, or an event with its name, id and data."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data or "null")


class SseReader:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 30.0) -> Message:
        """The next message (comments included); fails after ``timeout`` or when the stream ends."""
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            comment: str | None = None
            async for line in self._lines:
                if line == "":
                    if fields or comment is not None:
                        return Message(fields.get("event"), fields.get("id"), fields.get("data"), comment)
                    continue
                if line.startswith(":"):
                    comment = line[1:].strip()
                    continue
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    async def until(self, event: str, timeout: float = 30.0) -> list[Message]:
        """Every event message up to and including the first named ``event``."""
        seen: list[Message] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                if message.event is None:
                    continue
                seen.append(message)
                if message.event == event:
                    return seen

    async def ended(self, timeout: float = 30.0) -> bool:
        """Whether the server ends the stream within ``timeout`` (nothing more to read)."""
        async with asyncio.timeout(timeout):
            async for _ in self._lines:
                pass
        return True


@asynccontextmanager
async def event_stream(
    http: httpx.AsyncClient, headers: dict[str, str], *, timeout: float = 30.0
) -> AsyncIterator[SseReader]:
    """An open stream, once the server is listening (its opening comment has arrived)."""
    async with http.stream("GET", STREAM_PATH, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        reader = SseReader(response)
        first = await reader.next(timeout)
        assert first.comment == "apprun event stream", first
        yield reader
