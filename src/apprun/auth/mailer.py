"""Outgoing mail: written with the change that causes it, delivered after commit.

A message (verification, password reset, invitation) is inserted into
``apprun_mail_outbox`` inside the caller's transaction, so a rolled-back
registration sends nothing and a committed one cannot lose its mail. After
the commit, `MailDelivery.flush` hands pending rows to the configured
backend:

- ``smtp``: aiosmtplib to ``SMTP_HOST`` (STARTTLS by default); a failure is
  recorded on the row and retried by the background loop.
- ``log`` (development only): the message, link included, is written to the
  log and marked sent — never allowed with ``APPRUN_ENV=prod``.
- ``none``: nothing can be sent; flows that need mail answer 503
  ``mail.not_configured`` before changing anything.

Subjects and bodies come from the i18n catalogs (``mail.<kind>.subject`` /
``.body``) in the recipient's locale.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any

import aiosmtplib

from apprun.kernel.config import Settings
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import ServiceUnavailable
from apprun.kernel.i18n import Translator
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow

__all__ = ["MailDelivery"]

_log = get_logger("apprun.mail")
_RETRY_WINDOW_HOURS = 24


class MailDelivery:
    def __init__(self, settings: Settings, db: Database, translator: Translator) -> None:
        self.settings = settings
        self.db = db
        self.translator = translator
        self.backend = settings.mailer
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # flushes in flight

    def ensure_available(self) -> None:
        """Raise 503 ``mail.not_configured`` when mail cannot be delivered."""
        if self.backend == "none":
            raise ServiceUnavailable("mail.not_configured")

    async def queue(self, conn: Connection, *, to: str, kind: str, locale: str, params: dict[str, Any]) -> None:
        """Write one localized message into the outbox, in the caller's transaction."""
        self.ensure_available()
        subject = self.translator.gettext(f"mail.{kind}.subject", locale, params)
        body = self.translator.gettext(f"mail.{kind}.body", locale, params)
        await conn.execute(
            "INSERT INTO apprun_mail_outbox (id, recipient, subject, body, kind, locale, backend, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            new_id(),
            to,
            subject,
            body,
            kind,
            locale,
            self.backend,
            utcnow(),
        )

    def flush_soon(self) -> None:
        """Deliver pending mail in the background (call after the transaction commits)."""
        task = asyncio.create_task(self._flush_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - the retry loop picks up what this missed
            _log.exception("mail_flush_failed")

    async def flush(self) -> int:
        """Send every pending message; returns how many were sent."""
        if self.backend == "none":
            return 0
        async with self._flush_lock:
            since = utcnow() - dt.timedelta(hours=_RETRY_WINDOW_HOURS)
            async with self.db.read() as conn:
                rows = await conn.fetch(
                    "SELECT id, recipient, subject, body, kind FROM apprun_mail_outbox "
                    "WHERE sent_at IS NULL AND created_at > $1 ORDER BY created_at LIMIT 100",
                    since,
                )
            sent = 0
            for row in rows:
                error = await self._deliver(row["recipient"], row["subject"], row["body"], row["kind"])
                async with self.db.transaction() as conn:
                    if error is None:
                        await conn.execute(
                            "UPDATE apprun_mail_outbox SET sent_at = $2, error = NULL WHERE id = $1",
                            row["id"],
                            utcnow(),
                        )
                        sent += 1
                    else:
                        await conn.execute("UPDATE apprun_mail_outbox SET error = $2 WHERE id = $1", row["id"], error)
            return sent

    async def _deliver(self, to: str, subject: str, body: str, kind: str) -> str | None:
        if self.backend == "log":
            _log.info("mail_logged", to=to, subject=subject, kind=kind, body=body)
            return None
        message = EmailMessage()
        name, address = parseaddr(self.settings.mail_from)
        message["From"] = formataddr((name, address))
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        s = self.settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls and not s.smtp_tls,
                use_tls=s.smtp_tls,
                timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            _log.warning("mail_failed", to=to, kind=kind, error=f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}"[:500]
        _log.info("mail_sent", to=to, kind=kind)
        return None

    async def run_retries(self, interval: float = 60.0) -> None:
        """Background loop: retry what failed (SMTP down, say) until it goes out."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.flush()

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
