"""Roles, policies, explain, the decision cache, and admin endpoints (checklist 14)."""

from __future__ import annotations

from typing import Any

import pytest

from apprun.app import wiring_of
from apprun.kernel.db import Database
from apprun.rbac.service import Rbac
from tests.support.accounts import bearer, join, register

EXPLAIN = "/api/v1/authz/explain"


async def _member(client: Any, db: Database, owner: dict[str, Any], role: str) -> dict[str, Any]:
    person = await register(client)
    tenant = owner["tenant_id"]
    await join(client, db, owner, person, role)
    switched = await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(person))
    data: dict[str, Any] = switched.json()
    return data


async def _explain(client: Any, tokens: dict[str, Any], action: str, obj: str) -> dict[str, Any]:
    r = await client.get(f"{EXPLAIN}?action={action}&object={obj}", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_a_custom_role_reads_posts_in_its_tenant_only_until_revoked(client: Any, db: Database) -> None:
    owner_a = await register(client)
    owner_b = await register(client)
    for owner in (owner_a, owner_b):
        r = await client.post(
            "/api/v1/roles", json={"name": "reader", "description": "reads posts"}, headers=bearer(owner)
        )
        assert r.status_code == 201, r.text
    grant = await client.post(
        "/api/v1/policies",
        json={"role": "reader", "object": "collection:posts", "action": "read"},
        headers=bearer(owner_a),
    )
    assert grant.status_code == 201
    policy = grant.json()
    reader = await _member(client, db, owner_a, "reader")
    allowed = await _explain(client, reader, "read", "collection:posts")
    assert allowed["allowed"] is True
    assert allowed["rule"] == {
        "role": "reader",
        "tenant_id": owner_a["tenant_id"],
        "object": "collection:posts",
        "action": "read",
        "effect": "allow",
    }
    assert (await _explain(client, reader, "update", "collection:posts"))["allowed"] is False
    assert (await _explain(client, reader, "read", "collection:comments"))["allowed"] is False

    # The same person, made a reader in B too, is not allowed there: B granted nothing.
    await join(client, db, owner_b, reader, "reader")
    in_b = (await client.post("/auth/tenant", json={"tenant_id": owner_b["tenant_id"]}, headers=bearer(reader))).json()
    denied = await _explain(client, in_b, "read", "collection:posts")
    assert denied["allowed"] is False
    assert denied["rule"] is None
    assert denied["reason"] == "no rule grants it"
    assert denied["roles"] == ["reader"]

    # Back in A, revoke the rule: the very next request is denied.
    in_a = (await client.post("/auth/tenant", json={"tenant_id": owner_a["tenant_id"]}, headers=bearer(in_b))).json()
    assert (await _explain(client, in_a, "read", "collection:posts"))["allowed"] is True
    assert (await client.delete(f"/api/v1/policies/{policy['id']}", headers=bearer(owner_a))).status_code == 204
    assert (await _explain(client, in_a, "read", "collection:posts"))["allowed"] is False


async def test_explain_names_the_deny_rule(client: Any, db: Database) -> None:
    owner = await register(client)
    admin = await _member(client, db, owner, "admin")
    verdict = await _explain(client, admin, "delete", "tenant")
    assert verdict["allowed"] is False
    assert verdict["reason"] == "denied by rule"
    assert verdict["rule"]["effect"] == "deny"
    assert verdict["rule"]["role"] == "admin"
    allowed = await _explain(client, admin, "update", "tenant")
    assert allowed["allowed"] is True
    assert allowed["rule"]["object"] == "*"


async def test_a_deny_rule_beats_an_allow(client: Any, db: Database) -> None:
    owner = await register(client)
    member = await _member(client, db, owner, "member")
    assert (await _explain(client, member, "delete", "collection:invoices"))["allowed"] is True
    r = await client.post(
        "/api/v1/policies",
        json={"role": "member", "object": "collection:invoices", "action": "delete", "effect": "deny"},
        headers=bearer(owner),
    )
    assert r.status_code == 201
    assert (await _explain(client, member, "delete", "collection:invoices"))["allowed"] is False
    assert (await _explain(client, member, "delete", "collection:posts"))["allowed"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"role": "member", "object": "collection:x", "action": "fly"}, "rbac.invalid_rule"),
        ({"role": "member", "object": "collection:x; drop", "action": "read"}, "rbac.invalid_rule"),
        ({"role": "member", "object": "collection:x", "action": "read", "effect": "maybe"}, "rbac.invalid_rule"),
        ({"role": "ghost", "object": "collection:x", "action": "read"}, "rbac.role_not_found"),
    ],
)
async def test_invalid_policies(client: Any, body: dict[str, str], code: str) -> None:
    owner = await register(client)
    r = await client.post("/api/v1/policies", json=body, headers=bearer(owner))
    assert r.status_code in (400, 404)
    assert r.json()["code"] == code


async def test_roles_lifecycle(client: Any, db: Database) -> None:
    owner = await register(client)
    h = bearer(owner)
    assert (await client.post("/api/v1/roles", json={"name": "Bad Name"}, headers=h)).status_code == 400
    assert (await client.post("/api/v1/roles", json={"name": "auditor"}, headers=h)).status_code == 201
    assert (await client.post("/api/v1/roles", json={"name": "auditor"}, headers=h)).status_code == 409
    assert (await client.delete("/api/v1/roles/member", headers=h)).status_code == 400
    await _member(client, db, owner, "auditor")
    in_use = await client.delete("/api/v1/roles/auditor", headers=h)
    assert in_use.status_code == 409
    assert in_use.json()["code"] == "rbac.role_in_use"
    assert (await client.post("/api/v1/roles", json={"name": "spare"}, headers=h)).status_code == 201
    assert (await client.delete("/api/v1/roles/spare", headers=h)).status_code == 204
    names = [r["name"] for r in (await client.get("/api/v1/roles", headers=h)).json()]
    assert "spare" not in names
    assert "auditor" in names


ADMIN_ENDPOINTS = [
    ("GET", "/api/v1/roles"),
    ("POST", "/api/v1/roles"),
    ("GET", "/api/v1/policies"),
    ("POST", "/api/v1/policies"),
    ("GET", "/api/v1/api-keys"),
    ("POST", "/api/v1/api-keys"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
]
BODIES = {
    "/api/v1/roles": {"name": "x"},
    "/api/v1/policies": {"role": "member", "object": "collection:x", "action": "read"},
    "/api/v1/api-keys": {"name": "k", "role": "viewer"},
    "/api/v1/users": {"email": "new@example.com"},
}


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
@pytest.mark.checklist(14)
async def test_admin_endpoints_refuse_anonymous_and_non_admins(
    client: Any, db: Database, method: str, path: str
) -> None:
    body = BODIES.get(path) if method == "POST" else None
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401, anonymous.text
    assert "www-authenticate" in anonymous.headers
    owner = await register(client)
    viewer = await _member(client, db, owner, "viewer")
    refused = await client.request(method, path, json=body, headers=bearer(viewer))
    assert refused.status_code == 403, refused.text


async def test_decisions_are_cached_until_the_tenant_changes(client: Any, app: Any, db: Database) -> None:
    owner = await register(client)
    member = await _member(client, db, owner, "member")
    enforcers = wiring_of(app).get(Rbac).enforcers
    assert (await _explain(client, member, "read", "collection:posts"))["allowed"] is True
    loads = enforcers.loads
    for _ in range(5):
        assert (await _explain(client, member, "read", "collection:posts"))["allowed"] is True
    assert enforcers.loads == loads  # answered from the cache, no reload
    # Any change to the tenant's rules bumps its version: the next check reloads once.
    await client.post("/api/v1/roles", json={"name": "extra"}, headers=bearer(owner))
    assert (await _explain(client, member, "read", "collection:posts"))["allowed"] is True
    assert enforcers.loads == loads + 1
    assert (await _explain(client, member, "read", "collection:posts"))["allowed"] is True
    assert enforcers.loads == loads + 1
