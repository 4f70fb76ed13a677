"""Account flows that travel by mail, and the user's own account.

Password reset (recover → mailed link → reset), password change, ``PATCH
/auth/me`` and tenant invitations, driven over HTTP with the mail read from
a real SMTP server (aiosmtpd), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from apprun.auth.account import use_one_time_token
from apprun.kernel.errors import ApiError
from apprun.modules import Settings
from tests.support import smtp
from tests.support.accounts import PASSWORD, bearer, login, register, unique_email
from tests.support.smtp import MailApp, MailSink, Received, answer_of, mail_app, smtp_settings, wait_until

mail_sink = smtp.mail_sink  # the shared SMTP server fixture

SITE = "https://app.example.test"
NEW_PASSWORD = "another long and fresh passphrase"
RESET_SUBJECT = {"en": "Reset your password", "zh-CN": "重置您的密码"}


@pytest.fixture
async def mailer(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink
) -> AsyncIterator[MailApp]:
    async with mail_app(smtp_settings(make_settings, database_url, mail_sink)) as app:
        yield app


async def mail_to(sink: MailSink, email: str, subject: str, count: int = 1) -> list[Received]:
    """The first ``count`` mails to ``email`` with this subject, once they have arrived."""

    def found() -> list[Received]:
        mails = [m for m in sink.received(email) if m.subject == subject]
        return mails if len(mails) >= count else []

    mails: list[Received] = await wait_until(found, f"{count} mail(s) {subject!r} to {email}")
    return mails


async def reset_token(mailer: MailApp, sink: MailSink, email: str, count: int = 1) -> str:
    """Ask for a reset link (the ``count``-th for this address) and return its token."""
    reply = await mailer.client.post("/auth/recover", json={"email": email})
    assert reply.status_code == 202, reply.text
    mails = await mail_to(sink, email, RESET_SUBJECT["en"], count)
    mail = mails[count - 1]
    assert mail.link.startswith(f"{SITE}/auth/reset?token=")
    return mail.token


async def refuses(mailer: MailApp, tokens: dict[str, Any]) -> None:
    """Both halves of a token pair are dead: the access token and the refresh token answer 401."""
    me = await mailer.client.get("/auth/me", headers=bearer(tokens))
    assert me.status_code == 401, me.text
    refreshed = await mailer.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401, refreshed.text


async def accepts(mailer: MailApp, tokens: dict[str, Any]) -> dict[str, Any]:
    """The pair still works: /auth/me answers and the refresh token rotates; returns the new pair."""
    me = await mailer.client.get("/auth/me", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    refreshed = await mailer.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    pair: dict[str, Any] = refreshed.json()
    return pair


def expect_error(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code, reply.text


# --- recover -----------------------------------------------------------------


@pytest.mark.checklist(7, 37)
async def test_recover_answers_alike_and_mails_only_known_users(mailer: MailApp, mail_sink: MailSink) -> None:
    known, unknown = unique_email("known"), unique_email("unknown")
    await register(mailer.client, known)

    for_unknown = await mailer.client.post("/auth/recover", json={"email": unknown})
    for_known = await mailer.client.post("/auth/recover", json={"email": known})
    assert for_known.status_code == 202, for_known.text
    assert answer_of(for_known) == answer_of(for_unknown)

    [mail] = await mail_to(mail_sink, known, RESET_SUBJECT["en"])
    assert "within 60 minutes" in mail.body
    assert mail.link.startswith(f"{SITE}/auth/reset?token=")
    assert mailer.flush() == 0  # nothing else is waiting to go out
    assert mail_sink.received(unknown) == []
    assert mailer.fetchval("SELECT count(*) FROM apprun_mail_outbox WHERE recipient = $1", unknown) == 0
    assert mailer.fetchval("SELECT count(*) FROM apprun_one_time_tokens WHERE email = $1", unknown) == 0

    # The address is matched as sign-up stored it, whatever its case and spacing.
    await mailer.client.post("/auth/recover", json={"email": f"  {known.upper()} "})
    await mail_to(mail_sink, known, RESET_SUBJECT["en"], count=2)


# --- reset -------------------------------------------------------------------


async def test_reset_with_the_mailed_token_replaces_the_password_and_every_session(
    mailer: MailApp, mail_sink: MailSink
) -> None:
    email = unique_email("reset")
    first = await register(mailer.client, email)
    second = await login(mailer.client, email)
    token = await reset_token(mailer, mail_sink, email)

    reply = await mailer.client.post("/auth/reset", json={"token": token, "password": NEW_PASSWORD})
    assert reply.status_code == 204, reply.text

    old = await mailer.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    expect_error(old, 400, "auth.invalid_credentials")
    await login(mailer.client, email, NEW_PASSWORD)
    await refuses(mailer, first)
    await refuses(mailer, second)

    again = await mailer.client.post("/auth/reset", json={"token": token, "password": "yet another passphrase 3"})
    expect_error(again, 400, "auth.invalid_token_link")
    await login(mailer.client, email, NEW_PASSWORD)


async def test_an_expired_reset_token_is_refused(mailer: MailApp, mail_sink: MailSink) -> None:
    email = unique_email("expired")
    tokens = await register(mailer.client, email)
    token = await reset_token(mailer, mail_sink, email)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    changed = mailer.execute(
        "UPDATE apprun_one_time_tokens SET expires_at = $1 WHERE kind = 'recover' AND user_id = $2",
        past,
        tokens["user"]["id"],
    )
    assert changed == 1

    reply = await mailer.client.post("/auth/reset", json={"token": token, "password": NEW_PASSWORD})
    expect_error(reply, 400, "auth.invalid_token_link")
    await login(mailer.client, email, PASSWORD)
    await accepts(mailer, tokens)


@pytest.mark.parametrize("how", ["reset", "change"])
async def test_a_new_password_retires_every_outstanding_reset_link(
    mailer: MailApp, mail_sink: MailSink, how: str
) -> None:
    email = unique_email("retire")
    tokens = await register(mailer.client, email)
    older = await reset_token(mailer, mail_sink, email, count=1)
    newer = await reset_token(mailer, mail_sink, email, count=2)

    if how == "reset":
        reply = await mailer.client.post("/auth/reset", json={"token": newer, "password": NEW_PASSWORD})
    else:
        reply = await mailer.client.post(
            "/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(tokens),
        )
    assert reply.status_code == 204, reply.text

    stale = await mailer.client.post("/auth/reset", json={"token": older, "password": "attacker chosen passphrase"})
    expect_error(stale, 400, "auth.invalid_token_link")
    await login(mailer.client, email, NEW_PASSWORD)


async def test_a_token_used_by_two_transactions_at_once_is_used_once(mailer: MailApp, mail_sink: MailSink) -> None:
    """Two resets with one link, interleaved: the second has read the token as unused before the first commits.

    On PostgreSQL the second transaction is held at the point where it waits
    for the first one's row lock (seen in ``pg_stat_activity``), which is
    exactly the interleaving that let both through; on SQLite the second
    cannot even begin before the first commits.
    """
    email = unique_email("race")
    await register(mailer.client, email)
    token = await reset_token(mailer, mail_sink, email)
    db = mailer.app.state.runtime.db

    async def second_use() -> Any:
        try:
            async with db.transaction() as conn:
                return await use_one_time_token(conn, "recover", token)
        except ApiError as exc:
            return exc

    async def blocked_on_a_lock() -> bool:
        async with db.read() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        return bool(waiting)

    async def race() -> tuple[Any, Any]:
        async with db.transaction() as conn:
            first = await use_one_time_token(conn, "recover", token)
            second = asyncio.create_task(second_use())
            if db.dialect == "postgres":
                deadline = asyncio.get_running_loop().time() + 15
                # Observed from a task of its own: this one holds a connection.
                while not await asyncio.create_task(blocked_on_a_lock()):
                    assert asyncio.get_running_loop().time() < deadline, "the second use never reached the row lock"
                    await asyncio.sleep(0.01)
        return first, await second

    first, second = mailer.call(race)
    assert first["email"] == email
    assert isinstance(second, ApiError), f"the token was used twice: {second!r}"
    assert second.code == "auth.invalid_token_link"

    reply = await mailer.client.post("/auth/reset", json={"token": token, "password": NEW_PASSWORD})
    expect_error(reply, 400, "auth.invalid_token_link")
    await login(mailer.client, email, PASSWORD)


# --- password change ---------------------------------------------------------


async def test_password_change_needs_the_current_password_and_signs_out_other_sessions(mailer: MailApp) -> None:
    email = unique_email("change")
    here = await register(mailer.client, email)
    elsewhere = await login(mailer.client, email)

    wrong = await mailer.client.post(
        "/auth/password",
        json={"current_password": "not my password at all", "new_password": NEW_PASSWORD},
        headers=bearer(here),
    )
    expect_error(wrong, 400, "auth.invalid_credentials")
    elsewhere = await accepts(mailer, elsewhere)  # nothing was revoked
    await login(mailer.client, email, PASSWORD)  # nothing was changed

    right = await mailer.client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(here),
    )
    assert right.status_code == 204, right.text
    await refuses(mailer, elsewhere)
    await accepts(mailer, here)
    old = await mailer.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    expect_error(old, 400, "auth.invalid_credentials")
    await login(mailer.client, email, NEW_PASSWORD)


# --- PATCH /auth/me ----------------------------------------------------------

READ_ONLY = [
    pytest.param({"email": "someone.else@example.com"}, ["email"], id="email"),
    pytest.param({"is_platform_admin": True}, ["is_platform_admin"], id="platform-admin"),
    pytest.param({"password": "a brand new passphrase"}, ["password"], id="password"),
    pytest.param({"email_verified": True}, ["email_verified"], id="email-verified"),
    pytest.param({"id": "01a00000-0000-7000-8000-000000000000"}, ["id"], id="id"),
    pytest.param({"name": "Mallory", "is_platform_admin": True}, ["is_platform_admin"], id="mixed-with-allowed"),
]


@pytest.mark.parametrize(("body", "fields"), READ_ONLY)
async def test_patch_me_refuses_read_only_fields_and_changes_nothing(
    mailer: MailApp, body: dict[str, Any], fields: list[str]
) -> None:
    email = unique_email("readonly")
    tokens = await register(mailer.client, email, name="Ada")
    before = (await mailer.client.get("/auth/me", headers=bearer(tokens))).json()
    row_before = mailer.fetch("SELECT * FROM apprun_users WHERE id = $1", tokens["user"]["id"])

    reply = await mailer.client.patch("/auth/me", json=body, headers=bearer(tokens))
    expect_error(reply, 400, "request.read_only_fields")
    assert reply.json()["details"] == {"fields": fields}

    assert (await mailer.client.get("/auth/me", headers=bearer(tokens))).json() == before
    assert mailer.fetch("SELECT * FROM apprun_users WHERE id = $1", tokens["user"]["id"]) == row_before
    await login(mailer.client, email, PASSWORD)


async def test_patch_me_changes_name_locale_and_data(mailer: MailApp, mail_sink: MailSink) -> None:
    email = unique_email("patch")
    tokens = await register(mailer.client, email, name="Ada")
    changes = {"name": "  Ada   Lovelace ", "locale": "zh-CN", "data": {"theme": "dark", "tags": ["a", "b"]}}

    reply = await mailer.client.patch("/auth/me", json=changes, headers=bearer(tokens))
    assert reply.status_code == 200, reply.text
    me = (await mailer.client.get("/auth/me", headers=bearer(tokens))).json()
    assert (me["name"], me["locale"], me["data"]) == ("Ada Lovelace", "zh-CN", changes["data"])
    assert (me["email"], me["is_platform_admin"]) == (email, False)

    # The locale, in the spelling clients use, picks the language of the user's mail.
    reply = await mailer.client.post("/auth/recover", json={"email": email})
    assert reply.status_code == 202, reply.text
    [mail] = await mail_to(mail_sink, email, RESET_SUBJECT["zh-CN"])
    assert "分钟内打开以下链接" in mail.body


async def test_a_name_cannot_smuggle_headers_into_an_invitation(mailer: MailApp, mail_sink: MailSink) -> None:
    owner = await register(mailer.client, unique_email("eve"), name="Eve")
    spy, invitee = unique_email("spy"), unique_email("invitee")
    reply = await mailer.client.patch("/auth/me", json={"name": f"Eve\r\nBcc: {spy}"}, headers=bearer(owner))
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == f"Eve Bcc: {spy}"

    invited = await mailer.client.post(
        f"/api/v1/tenants/{owner['tenant_id']}/members",
        json={"email": invitee, "role": "viewer"},
        headers=bearer(owner),
    )
    assert invited.status_code == 201, invited.text
    [mail] = await mail_sink.wait_for(invitee)
    assert mail.rcpt_tos == (invitee,)
    assert mail.message["Bcc"] is None
    assert mail.subject == f"Eve Bcc: {spy} invited you to Eve's workspace"
    assert mail_sink.received(spy) == []


# --- invitations -------------------------------------------------------------


async def team_of(mailer: MailApp) -> tuple[dict[str, Any], str]:
    """Olivia, signed in, and the id of the team tenant she owns (besides her personal one)."""
    owner = await register(mailer.client, unique_email("owner"), name="Olivia")
    created = await mailer.client.post("/api/v1/tenants", json={"name": "Acme"}, headers=bearer(owner))
    assert created.status_code == 201, created.text
    return owner, created.json()["id"]


async def invite(mailer: MailApp, sink: MailSink, owner: dict[str, Any], tenant: str, email: str) -> str:
    """The owner invites ``email`` as a viewer of ``tenant``; returns the mailed token."""
    reply = await mailer.client.post(
        f"/api/v1/tenants/{tenant}/members", json={"email": email, "role": "viewer"}, headers=bearer(owner)
    )
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"email": email, "role": "viewer", "status": "invited"}
    [mail] = await mail_to(sink, email, "Olivia invited you to Acme")
    assert mail.link.startswith(f"{SITE}/auth/invitation?token=")
    assert "as viewer" in mail.body
    return mail.token


async def test_an_invitation_mails_a_token_that_joins_the_tenant(mailer: MailApp, mail_sink: MailSink) -> None:
    owner, tenant = await team_of(mailer)
    invitee = unique_email("invitee")
    token = await invite(mailer, mail_sink, owner, tenant, invitee)
    tenants_before = mailer.count("apprun_tenants")

    joined = await register(mailer.client, invitee, invite_token=token)
    assert (joined["tenant_id"], joined["roles"]) == (tenant, ["viewer"])
    me = (await mailer.client.get("/auth/me", headers=bearer(joined))).json()
    assert (me["email"], me["tenant_id"], me["roles"]) == (invitee, tenant, ["viewer"])
    assert me["email_verified"] is True  # the invitation link proved the address

    # No personal tenant: the invitee belongs to the inviting tenant only.
    assert mailer.count("apprun_tenants") == tenants_before
    mine = (await mailer.client.get("/api/v1/tenants", headers=bearer(joined))).json()
    assert [(t["id"], t["role"], t["personal"]) for t in mine] == [(tenant, "viewer", False)]
    members = (await mailer.client.get(f"/api/v1/tenants/{tenant}/members", headers=bearer(owner))).json()
    assert {(m["email"], m["role"]) for m in members} == {(owner["user"]["email"], "owner"), (invitee, "viewer")}


async def test_an_invitation_token_is_for_its_address_and_for_one_use(mailer: MailApp, mail_sink: MailSink) -> None:
    owner, tenant = await team_of(mailer)
    invitee, stranger = unique_email("invitee"), unique_email("stranger")
    token = await invite(mailer, mail_sink, owner, tenant, invitee)
    users_before = mailer.count("apprun_users")

    borrowed = await mailer.client.post(
        "/auth/register", json={"email": stranger, "password": PASSWORD, "invite_token": token}
    )
    expect_error(borrowed, 400, "auth.invalid_invitation")
    assert mailer.count("apprun_users") == users_before

    joined = await register(mailer.client, invitee, invite_token=token)
    assert joined["tenant_id"] == tenant

    # Used: even for its own address (the account gone, so the address is free again) it is refused.
    mailer.execute("DELETE FROM apprun_users WHERE id = $1", joined["user"]["id"])
    replayed = await mailer.client.post(
        "/auth/register", json={"email": invitee, "password": PASSWORD, "invite_token": token}
    )
    expect_error(replayed, 400, "auth.invalid_invitation")
    assert mailer.fetchval("SELECT count(*) FROM apprun_users WHERE email = $1", invitee) == 0
