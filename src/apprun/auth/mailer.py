"""Outgoing mail: written with the change that causes it, delivered after commit.

A message (verification, password reset, invitation, or the notice that
someone tried to sign up with an address that already has an account) is
inserted into ``apprun_mail_outbox`` inside the caller's transaction, so a
rolled-back registration sends nothing and a committed one cannot lose its
mail. After the commit, `MailDelivery.flush` hands pending rows to the
configured backend:

- ``smtp``: aiosmtplib to ``SMTP_HOST`` (STARTTLS by default); a failure is
  recorded on the row and retried by the background loop, except a
  permanent one (the server refused the recipient or the message with a
  5xx): that row keeps its ``rejected: …`` error and is not tried again.
- ``log`` (development only): the message, link included, is written to the
  log and marked sent — never allowed with ``APPRUN_ENV=prod``.
- ``none``: nothing can be sent; flows that need mail answer 503
  ``mail.not_configured`` before changing anything.

Subjects and bodies come from the i18n catalogs (``mail.<kind>.subject`` /
``.body``) in the recipient's locale.

Several workers (and instances) share the outbox, so a row is *claimed*
before it is sent: a conditional update sets ``claimed_at``, and only the
worker whose update lands sends it. A claim that is never settled (the
worker died mid-send) lapses after `_CLAIM_LEASE` and the row is sent again:
delivery is at least once, never twice while the sender lives. Fresh mail
goes before retries, so failing rows cannot hold up new ones, and an
unreachable server ends the batch instead of being tried once per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

import aiosmtplib

from apprun.auth.settings import AuthSettings
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import ServiceUnavailable
from apprun.kernel.i18n import Translator
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow

__all__ = ["MailDelivery"]

_log = get_logger("apprun.mail")
_RETRY_WINDOW_HOURS = 24
_BATCH = 100
#: ``error`` prefix of a permanent failure, which is not retried.
_REJECTED = "rejected: "
#: How long a claim holds; far above the 10 s send timeout.
_CLAIM_LEASE = dt.timedelta(minutes=5)


class _Unreachable(Exception):
    """The SMTP server could not be reached: the rest of the batch would fail too."""


class MailDelivery:
    def __init__(self, settings: AuthSettings, db: Database, translator: Translator) -> None:
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
        # Stored locales come in either spelling (``zh_CN`` from a request,
        # ``zh-CN`` as clients write it); the catalogs know only one.
        locale = self.translator.negotiate(locale)
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
            now = utcnow()
            async with self.db.read() as conn:
                rows = await conn.fetch(
                    "SELECT id, recipient, subject, body, kind FROM apprun_mail_outbox "
                    "WHERE created_at > $1 AND sent_at IS NULL AND (error IS NULL OR error NOT LIKE $2) "
                    "AND (claimed_at IS NULL OR claimed_at < $3) "
                    "ORDER BY CASE WHEN error IS NULL THEN 0 ELSE 1 END, created_at LIMIT $4",
                    now - dt.timedelta(hours=_RETRY_WINDOW_HOURS),
                    _REJECTED + "%",
                    now - _CLAIM_LEASE,
                    _BATCH,
                )
            sent = 0
            for row in rows:
                if not await self._claim(row["id"]):
                    continue  # another worker has it
                try:
                    error = await self._deliver(row["id"], row["recipient"], row["subject"], row["body"], row["kind"])
                except _Unreachable as exc:
                    await self._settle(row["id"], str(exc))
                    break
                await self._settle(row["id"], error)
                if error is None:
                    sent += 1
            return sent

    async def _claim(self, mail_id: str) -> bool:
        async with self.db.transaction() as conn:
            now = utcnow()
            claimed = await conn.execute(
                "UPDATE apprun_mail_outbox SET claimed_at = $2 "
                "WHERE id = $1 AND sent_at IS NULL AND (claimed_at IS NULL OR claimed_at < $3)",
                mail_id,
                now,
                now - _CLAIM_LEASE,
            )
        return claimed == 1

    async def _settle(self, mail_id: str, error: str | None) -> None:
        async with self.db.transaction() as conn:
            if error is None:
                await conn.execute(
                    "UPDATE apprun_mail_outbox SET sent_at = $2, error = NULL, claimed_at = NULL WHERE id = $1",
                    mail_id,
                    utcnow(),
                )
            else:
                await conn.execute(
                    "UPDATE apprun_mail_outbox SET error = $2, claimed_at = NULL WHERE id = $1", mail_id, error[:500]
                )

    def _message(self, mail_id: str, to: str, subject: str, body: str) -> EmailMessage:
        name, address = parseaddr(self.settings.mail_from)
        domain = address.rpartition("@")[2] or "apprun.invalid"
        message = EmailMessage()
        message["From"] = formataddr((name, address))
        message["To"] = to
        message["Subject"] = subject
        # RFC 5322 requires a Date; a Message-ID derived from the row lets a
        # recipient recognise a retried copy; Auto-Submitted (RFC 3834) keeps
        # vacation responders quiet.
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{mail_id}@{domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body)
        return message

    async def _deliver(self, mail_id: str, to: str, subject: str, body: str, kind: str) -> str | None:
        """None once sent, else the error to keep on the row; raises `_Unreachable`."""
        if self.backend == "log":
            _log.info("mail_logged", to=to, subject=subject, kind=kind, body=body)
            return None
        try:
            message = self._message(mail_id, to, subject, body)
        except ValueError as exc:  # a header the email package refuses (a CR/LF in it): no retry helps
            _log.warning("mail_invalid", to=to, kind=kind, error=str(exc))
            return f"{_REJECTED}invalid message: {exc}"
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
        except aiosmtplib.SMTPConnectError as exc:  # refused, timed out or unresolvable: the server is away
            error = f"{type(exc).__name__}: {exc}"
            _log.warning("mail_failed", to=to, kind=kind, error=error)
            raise _Unreachable(error) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # this message failed; the next may not
            error = f"{type(exc).__name__}: {exc}"
            _log.warning("mail_failed", to=to, kind=kind, error=error)
            return _REJECTED + error if isinstance(exc, aiosmtplib.SMTPException) and _permanent(exc) else error
        _log.info("mail_sent", to=to, kind=kind)
        return None

    async def run_retries(self, interval: float = 60.0) -> None:
        """Background loop: retry what failed (SMTP down, say) until it goes out."""
        while True:
            await asyncio.sleep(interval)
            await self._flush_quietly()

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(5):
                    await task


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    """A 5xx refusal of this recipient or this message (not of our login or sender: configuration)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(r.code >= 500 for r in exc.recipients)
    return isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError) and exc.code >= 500
