"""Outgoing mail, end to end through a real SMTP server (aiosmtpd).

What `apprun.auth.mailer` promises: a message is written with the change
that causes it and is delivered after the commit (so a rolled-back change
mails nothing and an SMTP outage loses nothing); it is localized; it goes
out once even with two workers flushing; a permanent refusal is not retried
and a bad message or failing recipients cannot hold up the rest; the
``none`` and ``log`` backends behave as documented. Every test runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from apprun.auth.mailer import MailDelivery
from apprun.kernel.config import ConfigError
from apprun.modules import Settings, load_settings
from tests.support import smtp
from tests.support.accounts import PASSWORD, bearer, register, unique_email
from tests.support.smtp import MailApp, MailSink, answer_of, mail_app, smtp_settings, wait_until

mail_sink = smtp.mail_sink  # the shared SMTP server fixture

SITE = "https://app.example.test"
VERIFY = {
    "en": ("Confirm your email address", "confirm your email address by opening this link"),
    "zh-CN": ("请确认您的邮箱地址", "请打开以下链接确认您的邮箱地址"),
}
STORED_LOCALE = {"en": "en", "zh-CN": "zh_CN"}


class Abort(Exception):
    """Raised to roll a transaction back."""


@pytest.fixture
async def mailer(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink
) -> AsyncIterator[MailApp]:
    async with mail_app(smtp_settings(make_settings, database_url, mail_sink)) as app:
        yield app


def _outbox(mailer: MailApp, recipient: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = mailer.fetch(
        "SELECT kind, locale, sent_at, error FROM apprun_mail_outbox WHERE recipient = $1 ORDER BY created_at",
        recipient,
    )
    return rows


def _queue(mailer: MailApp, *mails: tuple[str, dict[str, Any]], kind: str = "verify") -> None:
    """Write mails (recipient, catalog parameters) into the outbox in one committed transaction."""

    async def run() -> None:
        async with mailer.app.state.runtime.db.transaction() as conn:
            for to, params in mails:
                await mailer.mail.queue(conn, to=to, kind=kind, locale="en", params=params)

    mailer.call(run)


def _params(n: int = 0) -> dict[str, Any]:
    return {"link": f"{SITE}/auth/verify?token=t{n}", "token": f"t{n}"}


# --- delivery of a real flow -------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh-CN"])
async def test_registration_mails_a_localized_link_that_verifies_once(
    mailer: MailApp, mail_sink: MailSink, language: str
) -> None:
    email = unique_email("verify")
    reply = await mailer.client.post(
        "/auth/register", json={"email": email, "password": PASSWORD}, headers={"Accept-Language": language}
    )
    assert reply.status_code == 201, reply.text
    tokens = reply.json()

    [mail] = await mail_sink.wait_for(email)
    subject, sentence = VERIFY[language]
    assert mail.subject == subject
    assert sentence in mail.body
    assert mail.rcpt_tos == (email,)
    assert mail.mail_from == "no-reply@apprun.test"
    assert mail.message["To"] == email
    assert "no-reply@apprun.test" in str(mail.message["From"])
    # RFC 5322 wants a Date; a Message-ID keeps the mail out of spam folders.
    assert mail.message["Date"] is not None
    assert mail.message["Message-ID"] is not None
    assert mail.link.startswith(f"{SITE}/auth/verify?token=")
    assert mail.token not in str(tokens), "the verification token must only travel by mail"
    # The server has the mail a moment before the outbox row is marked sent.
    [row] = await wait_until(
        lambda: [r for r in _outbox(mailer, email) if r["sent_at"] is not None], "the outbox row marked sent"
    )
    assert (row["kind"], row["locale"], row["error"]) == ("verify", STORED_LOCALE[language], None)

    me = await mailer.client.get("/auth/me", headers=bearer(tokens))
    assert me.json()["email_verified"] is False

    first = await mailer.client.post("/auth/verify", json={"token": mail.token})
    assert first.status_code == 204, first.text
    me = await mailer.client.get("/auth/me", headers=bearer(tokens))
    assert me.json()["email_verified"] is True

    again = await mailer.client.post("/auth/verify", json={"token": mail.token})
    assert again.status_code == 400
    assert again.json()["code"] == "auth.invalid_token_link"
    forged = await mailer.client.post("/auth/verify", json={"token": mail.token[:-2] + "xx"})
    assert forged.status_code == 400
    assert forged.json()["code"] == "auth.invalid_token_link"


# --- the transactional outbox ------------------------------------------------

TABLES = ("apprun_users", "apprun_tenants", "apprun_sessions", "apprun_one_time_tokens", "apprun_mail_outbox")


async def test_a_registration_that_fails_in_its_transaction_mails_nothing(mailer: MailApp, mail_sink: MailSink) -> None:
    email = unique_email("rolledback")
    before = {table: mailer.count(table) for table in TABLES}

    # The user row is inserted before the invitation is checked: the refusal rolls it back.
    reply = await mailer.client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "invite_token": "no-such-invitation"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "auth.invalid_invitation"
    assert {table: mailer.count(table) for table in TABLES} == before
    assert mailer.flush() == 0
    assert mail_sink.received(email) == []

    # Nothing was left behind: the same address registers normally and gets exactly one mail.
    await register(mailer.client, email)
    assert len(await mail_sink.wait_for(email)) == 1
    assert mailer.flush() == 0
    assert len(mail_sink.received(email)) == 1


async def test_mail_queued_in_a_rolled_back_transaction_is_never_sent(mailer: MailApp, mail_sink: MailSink) -> None:
    email = unique_email("aborted")

    async def queue_then_fail() -> None:
        async with mailer.app.state.runtime.db.transaction() as conn:
            await mailer.mail.queue(conn, to=email, kind="verify", locale="en", params=_params())
            raise Abort

    with pytest.raises(Abort):
        mailer.call(queue_then_fail)
    assert _outbox(mailer, email) == []
    assert mailer.flush() == 0
    assert mail_sink.received(email) == []


async def test_mail_survives_an_smtp_outage_and_is_delivered_once(mailer: MailApp, mail_sink: MailSink) -> None:
    mail_sink.stop()
    email = unique_email("outage")
    await register(mailer.client, email)  # the sign-up itself does not depend on mail

    def failed() -> list[dict[str, Any]]:
        return [r for r in _outbox(mailer, email) if r["sent_at"] is None and r["error"]]

    [row] = await wait_until(failed, "the background delivery to fail")
    assert "SMTPConnectError" in row["error"]

    mail_sink.start()
    assert mailer.flush() == 1
    [mail] = await mail_sink.wait_for(email)
    assert mailer.flush() == 0
    assert len(mail_sink.received(email)) == 1
    [row] = _outbox(mailer, email)
    assert row["sent_at"] is not None
    assert row["error"] is None

    verified = await mailer.client.post("/auth/verify", json={"token": mail.token})
    assert verified.status_code == 204, verified.text


async def test_two_workers_flushing_at_once_send_each_mail_once(mailer: MailApp, mail_sink: MailSink) -> None:
    runtime = mailer.app.state.runtime
    # Another worker process: its own MailDelivery over the same outbox.
    other = MailDelivery(runtime.settings, runtime.db, runtime.translator)
    recipients = [unique_email("worker") for _ in range(6)]
    _queue(mailer, *((to, _params(n)) for n, to in enumerate(recipients)))

    async def both() -> list[int]:
        return list(await asyncio.gather(mailer.mail.flush(), other.flush()))

    sent = mailer.call(both)
    assert sum(sent) == len(recipients)
    for to in recipients:
        assert len(mail_sink.received(to)) == 1, to
        [row] = _outbox(mailer, to)
        assert row["sent_at"] is not None
        assert row["error"] is None
    assert mailer.flush() == 0
    assert mailer.call(other.flush) == 0


async def test_permanent_refusals_are_kept_and_not_retried(mailer: MailApp, mail_sink: MailSink) -> None:
    gone, later, fine = unique_email("gone"), unique_email("later"), unique_email("fine")
    mail_sink.refused.add(gone)
    mail_sink.deferred.add(later)
    _queue(mailer, (gone, _params(1)), (later, _params(2)), (fine, _params(3)))

    assert mailer.flush() == 1
    assert len(mail_sink.received(fine)) == 1
    [refused] = _outbox(mailer, gone)
    assert refused["sent_at"] is None
    assert refused["error"].startswith("rejected: ")
    assert "550" in refused["error"]
    [deferred] = _outbox(mailer, later)
    assert deferred["sent_at"] is None
    assert "451" in deferred["error"]
    assert not deferred["error"].startswith("rejected")

    assert mailer.flush() == 0
    assert mail_sink.refusals == [gone], "a 550 is final: not tried again"
    assert mail_sink.deferrals == [later, later], "a 451 is temporary: tried again"

    mail_sink.deferred.clear()
    assert mailer.flush() == 1
    assert len(mail_sink.received(later)) == 1
    assert mail_sink.received(gone) == []


async def test_failing_mail_does_not_hold_up_new_mail(mailer: MailApp, mail_sink: MailSink) -> None:
    stuck = unique_email("stuck")
    mail_sink.deferred.add(stuck)
    _queue(mailer, *((stuck, _params(n)) for n in range(100)))  # a full batch that keeps failing
    assert mailer.flush() == 0

    fresh = unique_email("fresh")
    _queue(mailer, (fresh, _params()))
    assert mailer.flush() == 1
    assert len(mail_sink.received(fresh)) == 1


async def test_a_message_that_cannot_be_built_does_not_block_the_outbox(mailer: MailApp, mail_sink: MailSink) -> None:
    poisoned, spy, fine = unique_email("poisoned"), unique_email("spy"), unique_email("fine")
    # A CR/LF in a header value (here through the invitation's subject) is refused by the email package.
    invite = {"inviter": f"Eve\r\nBcc: {spy}", "tenant": "Acme", "role": "viewer", "days": 7, "link": SITE}
    _queue(mailer, (poisoned, invite), kind="invite")
    _queue(mailer, (fine, _params()))

    assert mailer.flush() == 1
    assert len(mail_sink.received(fine)) == 1
    assert mail_sink.received(poisoned) == []
    assert mail_sink.received(spy) == []
    [row] = _outbox(mailer, poisoned)
    assert row["sent_at"] is None
    assert row["error"].startswith("rejected: invalid message")
    assert mailer.flush() == 0


# --- the other backends ------------------------------------------------------


async def test_without_mail_flows_that_need_it_answer_503(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink
) -> None:
    async with mail_app(make_settings(database_url=database_url, mail_backend="none")) as app:
        known = unique_email("known")
        owner = await register(app.client, known)  # sign-up needs no mail unless verification is required
        assert app.count("apprun_mail_outbox") == 0

        replies = [
            await app.client.post("/auth/recover", json={"email": email}) for email in (known, unique_email("unknown"))
        ]
        for reply in replies:
            assert reply.status_code == 503, reply.text
            assert reply.json()["code"] == "mail.not_configured"
        assert answer_of(replies[0]) == answer_of(replies[1])

        invited = await app.client.post(
            f"/api/v1/tenants/{owner['tenant_id']}/members",
            json={"email": unique_email("invitee"), "role": "viewer"},
            headers=bearer(owner),
        )
        assert invited.status_code == 503, invited.text
        assert invited.json()["code"] == "mail.not_configured"
        assert app.count("apprun_one_time_tokens") == 0
        assert app.count("apprun_mail_outbox") == 0
    assert mail_sink.received() == []


async def test_signup_that_needs_verification_is_refused_without_mail(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(database_url=database_url, mail_backend="none", auth_require_email_verification=True)
    async with mail_app(settings) as app:
        reply = await app.client.post("/auth/register", json={"email": unique_email(), "password": PASSWORD})
        assert reply.status_code == 503, reply.text
        assert reply.json()["code"] == "mail.not_configured"
        assert app.count("apprun_users") == 0


async def test_the_log_backend_marks_mail_sent_without_sending(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink
) -> None:
    settings = make_settings(database_url=database_url, mail_backend="log", smtp_host="127.0.0.1")
    settings = settings.model_copy(update={"smtp_port": mail_sink.port})
    async with mail_app(settings) as app:
        email = unique_email("logged")
        await register(app.client, email)

        def logged() -> list[dict[str, Any]]:
            return [r for r in _outbox(app, email) if r["sent_at"] is not None and r["error"] is None]

        await wait_until(logged, "the logged mail to be marked sent")
    assert mail_sink.received() == []


def test_the_log_backend_is_refused_in_production(tmp_path: Path) -> None:
    prod = {"apprun_env": "prod", "jwt_secret": "s" * 64, "apprun_data_dir": tmp_path, "_env_file": None}
    with pytest.raises(ConfigError, match="MAIL_BACKEND=log"):
        load_settings(mail_backend="log", **prod)
    # The refusal is about printing mail, not about production itself.
    assert load_settings(mail_backend="smtp", smtp_host="127.0.0.1", **prod).mailer == "smtp"
    assert load_settings(**prod).mailer == "none"
