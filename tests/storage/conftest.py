"""What the storage tests share: people in one tenant with each built-in role, and an outsider."""

from __future__ import annotations

from typing import Any

from apprun.kernel.db import Database
from tests.support.accounts import bearer, join, register


async def switch(client: Any, tokens: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """``tokens``' session moved to ``tenant_id`` (a tenant they belong to)."""
    reply = await client.post("/auth/tenant", json={"tenant_id": tenant_id}, headers=bearer(tokens))
    assert reply.status_code == 200, reply.text
    switched: dict[str, Any] = reply.json()
    return switched


async def people(client: Any, db: Database) -> dict[str, dict[str, Any]]:
    """An owner, an admin, a member and a viewer of the owner's tenant, and an outsider with a tenant of their own."""
    owner = await register(client)
    crowd = {"owner": owner, "outsider": await register(client)}
    for role in ("admin", "member", "viewer"):
        person = await register(client)
        await join(client, db, owner, person, role)
        crowd[role] = await switch(client, person, owner["tenant_id"])
    return crowd
