"""A real SMTP server for mail tests, and an apprun app that sends to it.

`MailSink` runs aiosmtpd on 127.0.0.1 and a free port, collecting what it
receives; it can be stopped and started again on the same port (an SMTP
outage) and can refuse chosen recipients with a permanent 550.

`MailApp` is an apprun app with its in-process client. The test client runs
the app (and its lifespan: the database pool, the mail retry loop) on an
event loop of its own, in another thread; database checks and direct service
calls therefore go through `MailApp.call`, which runs a coroutine there —
an asyncpg pool cannot be used from another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app, wiring_of
from apprun.auth.mailer import MailDelivery
from apprun.auth.service import Auth
from apprun.kernel.db import Database
from apprun.modules import Settings
from apprun.testing.engines import free_port

__all__ = [
    "MailApp",
    "MailSink",
    "Received",
    "answer_of",
    "mail_app",
    "mail_sink",
    "smtp_settings",
    "wait_until",
]

_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "the mail has no text/plain body"
        return str(part.get_content())

    @property
    def link(self) -> str:
        found = _LINK.findall(self.body)
        assert len(found) == 1, f"expected one link in the mail, got {found!r}"
        return str(found[0])

    @property
    def token(self) -> str:
        """The ``token`` query parameter of the mail's link."""
        return parse_qs(urlsplit(self.link).query)["token"][0]


class _Collector:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,  # noqa: ARG002 - aiosmtpd's handler signature
        session: Session,  # noqa: ARG002 - aiosmtpd's handler signature
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],  # noqa: ARG002 - aiosmtpd's handler signature
    ) -> str:
        if address.lower() in self.sink.refused:
            self.sink.refusals.append(address.lower())
            return "550 5.1.1 no such mailbox"
        if address.lower() in self.sink.deferred:
            self.sink.deferrals.append(address.lower())
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: ARG002 - aiosmtpd's handler signature
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), message)
        with self.sink.lock:
            self.sink.messages.append(received)
        return "250 OK"


class MailSink:
    """aiosmtpd collecting messages; stoppable and restartable on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        #: Recipients refused for good (550) / for now (451), and who was.
        self.refused: set[str] = set()
        self.refusals: list[str] = []
        self.deferred: set[str] = set()
        self.deferrals: list[str] = []
        self._controller: Controller | None = None

    def start(self) -> None:
        assert self._controller is None, "already running"
        controller = Controller(_Collector(self), hostname="127.0.0.1", port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self, to: str | None = None) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if to is None or to in m.rcpt_tos]

    async def wait_for(self, to: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        """The messages to ``to`` once there are ``count`` of them (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(to)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} mail(s) to {to} expected; got {len(found)}: {found!r}")
            await asyncio.sleep(0.02)


def answer_of(reply: Any) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body and headers of a reply, without what differs per request (its id)."""
    body = reply.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    headers = {k: v for k, v in reply.headers.items() if k.lower() not in ("x-request-id", "date")}
    return reply.status_code, body, headers


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def smtp_settings(make_settings: Callable[..., Settings], database_url: str, sink: MailSink, **extra: Any) -> Settings:
    """apprun sending through ``sink`` (plain SMTP: the test server has no certificate)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "mail_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": sink.port,
        "smtp_starttls": False,
        "mail_from": "apprun tests <no-reply@apprun.test>",
        "auth_site_url": "https://app.example.test",
    }
    values.update(extra)
    return make_settings(**values)


class MailApp:
    """An apprun app, its client, and a way to reach its services and database."""

    def __init__(self, app: Litestar, client: AsyncTestClient[Litestar]) -> None:
        self.app = app
        self.client = client

    @property
    def mail(self) -> MailDelivery:
        return wiring_of(self.app).get(Auth).mail

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``fn(*args)`` on the app's event loop and return its result."""
        return self.client.blocking_portal.call(fn, *args)

    def fetchval(self, sql: str, *args: Any) -> Any:
        async def run() -> Any:
            async with self.app.state.runtime.db.read() as conn:
                return await conn.fetchval(sql, *args)

        return self.call(run)

    def fetch(self, sql: str, *args: Any) -> list[Any]:
        async def run() -> list[Any]:
            async with self.app.state.runtime.db.read() as conn:
                return [dict(zip(row.keys(), row, strict=True)) for row in await conn.fetch(sql, *args)]

        result: list[Any] = self.call(run)
        return result

    def execute(self, sql: str, *args: Any) -> int:
        async def run() -> int:
            db: Database = self.app.state.runtime.db
            async with db.transaction() as conn:
                return await conn.execute(sql, *args)

        count: int = self.call(run)
        return count

    def count(self, table: str) -> int:
        return int(self.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - test-chosen table names

    def flush(self) -> int:
        """Deliver pending mail now (what the retry loop does every minute)."""
        sent: int = self.call(self.mail.flush)
        return sent


@contextlib.asynccontextmanager
async def mail_app(settings: Settings) -> AsyncIterator[MailApp]:
    """The app for ``settings``, its lifespan running around the block."""
    app = create_app(settings, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield MailApp(app, client)
