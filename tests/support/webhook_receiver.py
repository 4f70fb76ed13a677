"""A real HTTP endpoint for webhook tests: records every request, answers from a script.

Served by the standard library on 127.0.0.1 (an ephemeral port, so parallel
tests never share one), in threads of its own, so the app's worker talks to
it over a real socket::

    with WebhookReceiver() as receiver:
        receiver.script(500, 500, Hang())  # the next answers, then `default`
        ... create a webhook for receiver.url("/a") ...
        requests = await receiver.wait_for(lambda r: len(r) >= 3, "three requests")

`verify` checks a request's Standard Webhooks signature; it is written from
the specification, independently of apprun's own signing code.

`Hang()` holds the request unanswered until the receiver closes (or the
client gives up and goes away), which is how a test makes a timeout happen
without sleeping for a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Hang", "Received", "WebhookReceiver", "verify"]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True if one ``v1`` signature in ``webhook-signature`` is HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return True
    return False


@dataclass(frozen=True)
class Received:
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes
    #: `time.monotonic()` when the request had been read.
    at: float
    #: What the receiver answered (None: it hung).
    answered: int | None


@dataclass(frozen=True)
class Hang:
    """Do not answer; hold the connection until the receiver closes (at most `limit` seconds)."""

    limit: float = 60.0


Reply = int | Hang


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver = self.server.receiver
        reply = receiver._next_reply()
        answered = reply if isinstance(reply, int) else None
        receiver._record(Received(self.path, headers, body, time.monotonic(), answered))
        if isinstance(reply, Hang):
            receiver._release.wait(reply.limit)
            return  # close without an answer
        with contextlib.suppress(OSError):  # the client may have given up already
            self.send_response(reply)
            self.send_header("Content-Length", "2")
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002 - quiet: BaseHTTPRequestHandler's signature
        return None


class WebhookReceiver:
    """Records requests and answers with scripted status codes, then `default`."""

    def __init__(self, default: Reply = 200) -> None:
        self.default: Reply = default
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._received: list[Received] = []
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"webhook-receiver-{self.port}")

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; `default` after them."""
        with self._lock:
            self._script.extend(replies)

    def set_default(self, reply: Reply) -> None:
        with self._lock:
            self.default = reply

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def of_event(self, event_id: str, path: str | None = None) -> list[Received]:
        """The requests that carried ``event_id`` as ``webhook-id`` (to ``path``, if given)."""
        return [
            r for r in self.requests if r.headers.get("webhook-id") == event_id and (path is None or r.path == path)
        ]

    async def wait_for_event(self, event_id: str, count: int = 1, path: str | None = None) -> list[Received]:
        """Waits until ``count`` requests carried ``event_id``; returns them all."""
        await self.wait_for(
            lambda _: len(self.of_event(event_id, path)) >= count, f"{count} request(s) for {event_id} {path or ''}"
        )
        return self.of_event(event_id, path)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    async def wait_for(
        self, check: Callable[[list[Received]], bool], what: str, timeout: float = 15.0
    ) -> list[Received]:
        """Poll until ``check(requests)`` holds (a deadline, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests
            if check(seen):
                return seen
            if time.monotonic() > deadline:
                shown = [(r.path, r.headers.get("webhook-id"), r.answered) for r in seen]
                raise AssertionError(f"timed out waiting for {what}; the receiver saw {shown}")
            await asyncio.sleep(0.05)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
