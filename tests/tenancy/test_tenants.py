"""Tenants, members, roles in a tenant, and isolation between tenants."""

from __future__ import annotations

from typing import Any

import pytest

from apprun.kernel.db import Database
from tests.support.accounts import bearer, join, register


async def _switch(client: Any, tokens: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    r = await client.post("/auth/tenant", json={"tenant_id": tenant_id}, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def _add(client: Any, owner: dict[str, Any], tenant_id: str, email: str, role: str) -> Any:
    return await client.post(
        f"/api/v1/tenants/{tenant_id}/members", json={"email": email, "role": role}, headers=bearer(owner)
    )


async def test_create_list_rename_delete(client: Any) -> None:
    owner = await register(client)
    created = await client.post("/api/v1/tenants", json={"name": "  Acme   Corp "}, headers=bearer(owner))
    assert created.status_code == 201
    tenant = created.json()
    assert tenant["name"] == "Acme Corp"
    assert tenant["role"] == "owner"
    listed = (await client.get("/api/v1/tenants", headers=bearer(owner))).json()
    assert {t["name"] for t in listed} == {"Acme Corp", f"{owner['user']['email'].split('@')[0]}'s workspace"}
    renamed = await client.patch(f"/api/v1/tenants/{tenant['id']}", json={"name": "Acme"}, headers=bearer(owner))
    assert renamed.json()["name"] == "Acme"
    assert (await client.delete(f"/api/v1/tenants/{tenant['id']}", headers=bearer(owner))).status_code == 204
    assert (await client.get(f"/api/v1/tenants/{tenant['id']}", headers=bearer(owner))).status_code == 404


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_bad_tenant_names(client: Any, name: str) -> None:
    owner = await register(client)
    r = await client.post("/api/v1/tenants", json={"name": name}, headers=bearer(owner))
    assert r.status_code == 400
    assert r.json()["code"] == "tenancy.invalid_name"


async def test_a_member_of_a_cannot_see_change_or_invite_in_b(client: Any) -> None:
    alice = await register(client)  # owner of tenant A (her personal tenant)
    bob = await register(client)  # owner of tenant B
    tenant_b = bob["tenant_id"]
    h = bearer(alice)
    attempts = [
        await client.get(f"/api/v1/tenants/{tenant_b}", headers=h),
        await client.patch(f"/api/v1/tenants/{tenant_b}", json={"name": "mine"}, headers=h),
        await client.delete(f"/api/v1/tenants/{tenant_b}", headers=h),
        await client.get(f"/api/v1/tenants/{tenant_b}/members", headers=h),
        await _add(client, alice, tenant_b, "friend@example.com", "admin"),
        await client.patch(
            f"/api/v1/tenants/{tenant_b}/members/{bob['user']['id']}", json={"role": "viewer"}, headers=h
        ),
        await client.delete(f"/api/v1/tenants/{tenant_b}/members/{bob['user']['id']}", headers=h),
        await client.post("/auth/tenant", json={"tenant_id": tenant_b}, headers=h),
    ]
    for r in attempts:
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "tenancy.tenant_not_found"
    # Nothing changed in B.
    members = (await client.get(f"/api/v1/tenants/{tenant_b}/members", headers=bearer(bob))).json()
    assert [(m["user_id"], m["role"]) for m in members] == [(bob["user"]["id"], "owner")]
    assert (await client.get(f"/api/v1/tenants/{tenant_b}", headers=bearer(bob))).json()["name"].endswith("workspace")


async def test_roles_inside_a_tenant(client: Any, db: Database) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    viewer = await register(client)
    admin = await register(client)
    assert (await join(client, db, owner, viewer, "viewer"))["role"] == "viewer"
    await join(client, db, owner, admin, "admin")
    viewer_in = await _switch(client, viewer, tenant)
    admin_in = await _switch(client, admin, tenant)
    assert viewer_in["roles"] == ["viewer"]
    # A viewer reads but does not manage.
    assert (await client.get(f"/api/v1/tenants/{tenant}/members", headers=bearer(viewer_in))).status_code == 200
    denied = await _add(client, viewer_in, tenant, "x@example.com", "member")
    assert denied.status_code == 403
    assert denied.json()["code"] == "auth.forbidden"
    assert (
        await client.patch(f"/api/v1/tenants/{tenant}", json={"name": "n"}, headers=bearer(viewer_in))
    ).status_code == 403
    # An admin manages members but may not delete the tenant or name owners.
    assert (
        await client.patch(f"/api/v1/tenants/{tenant}", json={"name": "Team"}, headers=bearer(admin_in))
    ).status_code == 200
    change = await client.patch(
        f"/api/v1/tenants/{tenant}/members/{viewer['user']['id']}", json={"role": "member"}, headers=bearer(admin_in)
    )
    assert change.status_code == 200
    promote = await client.patch(
        f"/api/v1/tenants/{tenant}/members/{viewer['user']['id']}", json={"role": "owner"}, headers=bearer(admin_in)
    )
    assert promote.status_code == 403
    assert promote.json()["code"] == "tenancy.owner_only"
    assert (await client.delete(f"/api/v1/tenants/{tenant}", headers=bearer(admin_in))).status_code == 403
    # The role change reached the viewer's next request (no re-login).
    me = (await client.get("/auth/me", headers=bearer(viewer_in))).json()
    assert me["roles"] == ["member"]


async def test_adding_twice_unknown_roles_and_the_last_owner(client: Any, db: Database) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    friend = await register(client)
    await join(client, db, owner, friend, "member")
    again = await _add(client, owner, tenant, friend["user"]["email"], "member")
    assert again.status_code == 409
    unknown_role = await _add(client, owner, tenant, "z@example.com", "emperor")
    assert unknown_role.status_code == 400
    assert unknown_role.json()["code"] == "rbac.role_not_found"
    demote = await client.patch(
        f"/api/v1/tenants/{tenant}/members/{owner['user']['id']}", json={"role": "admin"}, headers=bearer(owner)
    )
    assert demote.status_code == 409
    assert demote.json()["code"] == "tenancy.last_owner"
    leave = await client.post(f"/api/v1/tenants/{tenant}/leave", headers=bearer(owner))
    assert leave.status_code == 409


async def test_leave_and_remove(client: Any, db: Database) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    a, b = await register(client), await register(client)
    for person in (a, b):
        await join(client, db, owner, person, "member")
    a_in = await _switch(client, a, tenant)
    assert (await client.post(f"/api/v1/tenants/{tenant}/leave", headers=bearer(a_in))).status_code == 204
    # Left: the token minted for that tenant stops working at once ...
    refused = await client.get("/api/v1/tenants", headers=bearer(a_in))
    assert (refused.status_code, refused.json()["code"]) == (401, "auth.membership_revoked")
    # ... and a refresh lands back in their own tenant, where that one is gone from their view.
    back = (await client.post("/auth/refresh", json={"refresh_token": a_in["refresh_token"]})).json()
    assert back["tenant_id"] == a["tenant_id"]
    assert tenant not in {t["id"] for t in (await client.get("/api/v1/tenants", headers=bearer(back))).json()}
    removed = await client.delete(f"/api/v1/tenants/{tenant}/members/{b['user']['id']}", headers=bearer(owner))
    assert removed.status_code == 204
    members = (await client.get(f"/api/v1/tenants/{tenant}/members", headers=bearer(owner))).json()
    assert [m["user_id"] for m in members] == [owner["user"]["id"]]


async def test_switching_tenant_changes_the_token_and_stales_the_old_one(client: Any) -> None:
    owner = await register(client)
    team = (await client.post("/api/v1/tenants", json={"name": "Team"}, headers=bearer(owner))).json()
    switched = await _switch(client, owner, team["id"])
    assert switched["tenant_id"] == team["id"]
    assert (await client.get("/auth/me", headers=bearer(switched))).json()["tenant_id"] == team["id"]
    # The token minted for the previous tenant no longer matches its session.
    assert (await client.get("/auth/me", headers=bearer(owner))).status_code == 401
    # The refresh token from the switch keeps the new tenant.
    refreshed = (await client.post("/auth/refresh", json={"refresh_token": switched["refresh_token"]})).json()
    assert refreshed["tenant_id"] == team["id"]


async def test_deleting_a_tenant_signs_its_sessions_out_of_it(client: Any, db: Any) -> None:
    owner = await register(client)
    team = (await client.post("/api/v1/tenants", json={"name": "Doomed"}, headers=bearer(owner))).json()
    switched = await _switch(client, owner, team["id"])
    assert (await client.delete(f"/api/v1/tenants/{team['id']}", headers=bearer(switched))).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(switched))).status_code == 401
    async with db.read() as conn:
        for table in ("apprun_memberships", "apprun_roles", "apprun_policies"):
            left = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", team["id"])  # noqa: S608
            assert left == 0, table
