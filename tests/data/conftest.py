"""Fixtures for the data API: a platform admin, collections, users in tenants."""

from __future__ import annotations

from typing import Any

import pytest

from apprun.kernel.db import create_database
from apprun.modules import Settings
from tests.support.accounts import bearer, login, register, unique_email

ADMIN_PASSWORD = "admin passphrase for data tests"


async def make_admin(client: Any, db: Any) -> dict[str, Any]:
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


async def define(client: Any, admin: dict[str, Any], definition: dict[str, Any], **query: Any) -> dict[str, Any]:
    reply = await client.post("/api/v1/collections", json=definition, headers=bearer(admin), params=query)
    assert reply.status_code in (200, 201), reply.text
    data: dict[str, Any] = reply.json()
    return data


@pytest.fixture
async def admin(client: Any, db: Any) -> dict[str, Any]:
    return await make_admin(client, db)
