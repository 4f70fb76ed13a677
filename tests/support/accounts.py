"""Helpers for tests that need signed-in users: people, platform admins, members of a tenant."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apprun.kernel.db import Database, create_database
from apprun.modules import Settings

__all__ = [
    "ADMIN_PASSWORD",
    "PASSWORD",
    "bearer",
    "invitation_token",
    "join",
    "login",
    "make_admin",
    "make_admin_on",
    "register",
    "unique_email",
]

PASSWORD = "correct horse battery staple"
ADMIN_PASSWORD = "admin passphrase for data tests"
_counter = itertools.count()


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


async def register(client: Any, email: str | None = None, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Register and return the token reply (asserting 201)."""
    body = {"email": email or unique_email(), "password": password, **extra}
    reply = await client.post("/auth/register", json=body)
    assert reply.status_code == 201, reply.text
    data: dict[str, Any] = reply.json()
    return data


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    reply = await client.post("/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


async def make_admin(client: Any, db: Database) -> dict[str, Any]:
    """A platform admin: registered, promoted in the database, signed in again."""
    email = unique_email("admin")
    tokens = await register(client, email=email, password=ADMIN_PASSWORD)
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET is_platform_admin = $1 WHERE id = $2", True, tokens["user"]["id"])
    return await login(client, email, ADMIN_PASSWORD)


async def make_admin_on(client: Any, settings: Settings) -> dict[str, Any]:
    """`make_admin` for an app built in the test: through a pool of the test's own, on the test's loop."""
    db = create_database(settings)
    await db.open()
    try:
        return await make_admin(client, db)
    finally:
        await db.close()


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def invitation_token(db: Database, email: str) -> str:
    """The token of the newest invitation mailed to ``email``, read from the mail outbox.

    ``db`` is the test's own connection to the app's database (a live
    server's too): the outbox row is there whatever the mail backend did.
    """
    async with db.read() as conn:
        body = await conn.fetchval(
            "SELECT body FROM apprun_mail_outbox WHERE recipient = $1 AND kind = 'invite' "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            email,
        )
    assert body is not None, f"no invitation mailed to {email}"
    [link] = [word for word in str(body).split() if "token=" in word]
    return parse_qs(urlsplit(link).query)["token"][0]


async def join(
    client: Any,
    db: Database,
    owner: dict[str, Any],
    person: dict[str, Any],
    role: str = "member",
    *,
    tenant: str | None = None,
) -> dict[str, Any]:
    """``person`` becomes a member of ``tenant`` (default: ``owner``'s active one) with ``role``.

    The way a member joins: ``owner`` invites ``person``'s address, and
    ``person``, signed in, accepts with the mailed token. Returns the
    acceptance (``tenant_id``, ``tenant_name``, ``role``); ``person``'s
    session stays in its tenant until it switches.
    """
    tenant = tenant or owner["tenant_id"]
    email = person["user"]["email"]
    invited = await client.post(
        f"/api/v1/tenants/{tenant}/members", json={"email": email, "role": role}, headers=bearer(owner)
    )
    assert invited.status_code == 201, invited.text
    token = await invitation_token(db, email)
    accepted = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=bearer(person))
    assert accepted.status_code == 200, accepted.text
    data: dict[str, Any] = accepted.json()
    assert data["tenant_id"] == tenant, data
    return data
