"""Sign-up does not tell who is registered (checklist 37, issue 10), on SQLite and PostgreSQL.

With email verification required, a registered address is answered exactly
like a new one (status, headers, body shape, the same argon2 work) and its
owner is told by mail. Without verification, ``AUTH_REGISTER_REVEALS_EXISTING``
decides: 409 (the dev default), or no sign-up gets tokens so that a
registered address can be answered like a new one (the prod default).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from apprun.kernel.db import create_database
from apprun.modules import Settings
from tests.support import smtp
from tests.support.accounts import PASSWORD, register, unique_email
from tests.support.live import LiveServer
from tests.support.smtp import MailSink, answer_of, mail_app, smtp_settings

pytestmark = pytest.mark.checklist(37)

mail_sink = smtp.mail_sink  # the shared SMTP server fixture

SITE = "https://app.example.test"
OTHER_PASSWORD = "somebody else's passphrase"
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in", "expires_at"}
#: What differs between two accounts' views, whoever they belong to.
OWN_VALUES = ("id", "email", "created_at", "updated_at")


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password argon2 hashes, in order."""
    seen: list[str] = []
    original = PasswordHasher.hash

    def spy(self: PasswordHasher, password: str | bytes, *, salt: bytes | None = None) -> str:
        seen.append(password if isinstance(password, str) else password.decode())
        return original(self, password, salt=salt)

    monkeypatch.setattr(PasswordHasher, "hash", spy)
    return seen


def _assert_alike(new: Any, taken: Any) -> None:
    """Two sign-up replies that a client cannot tell apart but by the values the request chose."""
    new_status, new_body, new_headers = answer_of(new)
    taken_status, taken_body, taken_headers = answer_of(taken)
    assert new_status == taken_status == 201, (new.text, taken.text)
    assert {k: v for k, v in new_headers.items() if k != "content-length"} == {
        k: v for k, v in taken_headers.items() if k != "content-length"
    }
    assert set(new_body) == set(taken_body) == {"user", "verification_required"}
    assert new_body["verification_required"] == taken_body["verification_required"]
    new_user, taken_user = new_body["user"], taken_body["user"]
    assert set(new_user) == set(taken_user)
    assert {k: v for k, v in new_user.items() if k not in OWN_VALUES} == {
        k: v for k, v in taken_user.items() if k not in OWN_VALUES
    }
    for field in ("id", "created_at", "updated_at"):  # the same shape: digits for digits
        assert _shape(new_user[field]) == _shape(taken_user[field]), (new_user, taken_user)


def _shape(value: str) -> str:
    return re.sub(r"[0-9a-f]", "x", value)


async def test_with_verification_a_registered_address_is_answered_like_a_new_one(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink, hashes: list[str]
) -> None:
    settings = smtp_settings(make_settings, database_url, mail_sink, auth_require_email_verification=True)
    async with mail_app(settings) as app:
        owner = unique_email("owner")
        first = await app.client.post("/auth/register", json={"email": owner, "password": PASSWORD})
        assert first.status_code == 201, first.text
        [verify] = await mail_sink.wait_for(owner)
        users = app.count("apprun_users")
        hashes.clear()

        body = {"password": OTHER_PASSWORD, "name": "Mallory"}
        new = await app.client.post("/auth/register", json={"email": unique_email("fresh"), **body})
        taken = await app.client.post("/auth/register", json={"email": f" {owner.upper()}", **body})

        _assert_alike(new, taken)
        assert taken.json()["user"]["id"] != first.json()["user"]["id"]
        assert taken.json()["user"]["email"] == owner
        assert hashes == [OTHER_PASSWORD, OTHER_PASSWORD], "both sign-ups must cost one argon2 hash"
        assert app.count("apprun_users") == users + 1

        # The owner hears of it, in their language, with the way back to the application.
        [_, notice] = await mail_sink.wait_for(owner, count=2)
        assert notice.subject == "Someone tried to sign up with your email address"
        assert notice.link == SITE
        assert app.fetchval(
            "SELECT count(*) FROM apprun_audit_log WHERE action = 'user.register_existing' AND target = $1", owner
        )
        # Nothing about the account changed: its password is still the owner's.
        assert (await app.client.post("/auth/verify", json={"token": verify.token})).status_code == 204
        mine = await app.client.post("/auth/login", json={"email": owner, "password": PASSWORD})
        assert mine.status_code == 200, mine.text
        theirs = await app.client.post("/auth/login", json={"email": owner, "password": OTHER_PASSWORD})
        assert theirs.json()["code"] == "auth.invalid_credentials"


async def test_without_verification_hidden_sign_ups_get_no_tokens(
    make_settings: Callable[..., Settings], database_url: str, mail_sink: MailSink, hashes: list[str]
) -> None:
    settings = smtp_settings(make_settings, database_url, mail_sink, auth_register_reveals_existing=False)
    async with mail_app(settings) as app:
        owner = unique_email("owner")
        first = await app.client.post("/auth/register", json={"email": owner, "password": PASSWORD})
        fresh = unique_email("fresh")
        hashes.clear()
        new = await app.client.post("/auth/register", json={"email": fresh, "password": OTHER_PASSWORD})
        taken = await app.client.post("/auth/register", json={"email": owner, "password": OTHER_PASSWORD})

        _assert_alike(new, taken)
        for reply in (first, new, taken):
            assert not TOKEN_FIELDS & set(reply.json()), reply.text
            assert reply.json()["verification_required"] is False
        assert hashes == [OTHER_PASSWORD, OTHER_PASSWORD]
        await mail_sink.wait_for(owner, count=2)  # the verification mail, then the notice
        # A new account signs in with the password it chose; the registered one keeps its own.
        assert (await app.client.post("/auth/login", json={"email": fresh, "password": OTHER_PASSWORD})).is_success
        assert (await app.client.post("/auth/login", json={"email": owner, "password": PASSWORD})).is_success
        theirs = await app.client.post("/auth/login", json={"email": owner, "password": OTHER_PASSWORD})
        assert theirs.status_code == 400


async def test_in_dev_a_registered_address_is_a_conflict_and_a_forged_invitation_learns_nothing(client: Any) -> None:
    owner = (await register(client))["user"]["email"]
    again = await client.post("/auth/register", json={"email": owner, "password": OTHER_PASSWORD})
    assert (again.status_code, again.json()["code"]) == (409, "auth.email_taken")
    # With an invitation that is no good, a registered address gets what a new one gets.
    forged = {"password": OTHER_PASSWORD, "invite_token": "not-an-invitation"}
    new = await client.post("/auth/register", json={"email": unique_email("fresh"), **forged})
    taken = await client.post("/auth/register", json={"email": owner, **forged})
    assert answer_of(new) == answer_of(taken)
    assert new.json()["code"] == "auth.invalid_invitation"


def test_only_dev_reveals_registered_addresses_by_default() -> None:
    dev = Settings(_env_file=None)
    prod = Settings(_env_file=None, apprun_env="prod", jwt_secret="x" * 48, mail_backend="none")
    assert (dev.register_reveals_existing, prod.register_reveals_existing) == (True, False)
    assert Settings(_env_file=None, apprun_env="prod", jwt_secret="x" * 48, auth_register_reveals_existing=True)
    # The limits' store holds across workers unless Redis is there for several machines.
    assert (dev.rate_limiter, Settings(_env_file=None, redis_host="127.0.0.1").rate_limiter) == ("database", "redis")


@pytest.mark.slow
async def test_concurrent_hidden_sign_ups_with_one_address_make_one_account(
    tmp_path: Path, make_settings: Callable[..., Settings], database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "AUTH_REGISTER_REVEALS_EXISTING": "false"}
    with LiveServer(tmp_path / "server", env, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = {"email": "twice@example.com", "password": PASSWORD}
            replies = await asyncio.gather(*(http.post("/auth/register", json=body) for _ in range(6)))
    assert [r.status_code for r in replies] == [201] * 6, [r.text for r in replies]
    assert all(set(r.json()) == {"user", "verification_required"} for r in replies)
    db = create_database(make_settings(database_url=database_url))
    await db.open()
    try:
        async with db.read() as conn:
            assert await conn.fetchval("SELECT count(*) FROM apprun_users WHERE email = 'twice@example.com'") == 1
    finally:
        await db.close()
