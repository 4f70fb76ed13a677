"""An httpx client that drives the app in the test's own event loop, for bodies sent as they are made.

Litestar's ``AsyncTestClient`` runs the app (and its database connections)
on an event loop in another thread, and its transport reads a request body
whole before the app sees it. A test that streams a body chunk by chunk,
pausing between chunks (an upload cut off half way, uploads that must
overlap), needs the app on its own loop: `same_loop_client` runs the app's
lifespan here and sends requests through httpx's ASGI transport, which hands
an async-generator body to the app one chunk per ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["same_loop_client"]


@contextlib.asynccontextmanager
async def same_loop_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan) on this loop, and a client to it; stopped on the way out."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task
