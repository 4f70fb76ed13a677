"""API keys: shown once, hashed at rest, scoped to a tenant and a role, revocable."""

from __future__ import annotations

from typing import Any

from tests.support.accounts import bearer, register

EXPLAIN = "/api/v1/authz/explain?action={action}&object={obj}"


async def _key(client: Any, owner: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/api-keys", json={"name": "ci", **body}, headers=bearer(owner))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_a_standard_key_acts_with_its_role(client: Any, db: Any) -> None:
    owner = await register(client)
    created = await _key(client, owner, role="viewer")
    key = created["key"]
    assert key.startswith("ak_")
    assert created["prefix"] == key[:10]
    async with db.read() as conn:
        stored = await conn.fetchval("SELECT key_hash FROM apprun_api_keys WHERE id = $1", created["id"])
    assert key not in stored
    listed = (await client.get("/api/v1/api-keys", headers=bearer(owner))).json()
    assert listed[0]["id"] == created["id"]
    assert "key" not in listed[0]
    for headers in ({"Authorization": f"Bearer {key}"}, {"apikey": key}):
        read = (await client.get(EXPLAIN.format(action="read", obj="collection:posts"), headers=headers)).json()
        assert read["allowed"] is True
        assert read["subject"] == f"key:{created['id']}"
        write = (await client.get(EXPLAIN.format(action="create", obj="collection:posts"), headers=headers)).json()
        assert write["allowed"] is False
    # A viewer key cannot manage keys, nor act on another tenant.
    assert (await client.get("/api/v1/api-keys", headers={"apikey": key})).status_code == 403
    other = await register(client)
    r = await client.get(f"/api/v1/tenants/{other['tenant_id']}/members", headers={"apikey": key})
    assert r.status_code == 404


async def test_a_service_key_bypasses_rbac_in_its_tenant_only(client: Any) -> None:
    owner = await register(client)
    service = (await _key(client, owner, kind="service"))["key"]
    verdict = (await client.get(EXPLAIN.format(action="delete", obj="tenant"), headers={"apikey": service})).json()
    assert verdict["allowed"] is True
    assert verdict["reason"] == "service key"
    members = await client.get(f"/api/v1/tenants/{owner['tenant_id']}/members", headers={"apikey": service})
    assert members.status_code == 200
    other = await register(client)
    r = await client.get(f"/api/v1/tenants/{other['tenant_id']}", headers={"apikey": service})
    assert r.status_code == 404
    # A key cannot mint a service key (only a signed-in person can).
    r = await client.post("/api/v1/api-keys", json={"name": "x", "kind": "service"}, headers={"apikey": service})
    assert r.status_code == 400
    assert r.json()["code"] == "auth.service_key_needs_user"


async def test_revoked_expired_and_unknown_keys_are_401(client: Any, db: Any) -> None:
    owner = await register(client)
    created = await _key(client, owner, role="member", expires_in_days=1)
    headers = {"apikey": created["key"]}
    assert (await client.get(EXPLAIN.format(action="read", obj="collection:x"), headers=headers)).status_code == 200
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_api_keys SET expires_at = created_at WHERE id = $1", created["id"])
    expired = await client.get(EXPLAIN.format(action="read", obj="collection:x"), headers=headers)
    assert expired.status_code == 401
    assert expired.json()["code"] == "auth.invalid_api_key"
    second = await _key(client, owner, role="member")
    assert (await client.delete(f"/api/v1/api-keys/{second['id']}", headers=bearer(owner))).status_code == 204
    r = await client.get(EXPLAIN.format(action="read", obj="collection:x"), headers={"apikey": second["key"]})
    assert r.status_code == 401
    r = await client.get(EXPLAIN.format(action="read", obj="collection:x"), headers={"apikey": "ak_" + "x" * 43})
    assert r.status_code == 401
    assert (await client.delete(f"/api/v1/api-keys/{second['id']}", headers=bearer(owner))).status_code == 404


async def test_key_creation_is_validated_and_audited(client: Any) -> None:
    owner = await register(client)
    for body in (
        {"name": "x"},
        {"name": "x", "role": "ghost"},
        {"name": "", "role": "viewer"},
        {"name": "x", "kind": "god"},
    ):
        r = await client.post("/api/v1/api-keys", json=body, headers=bearer(owner))
        assert r.status_code == 400, body
    created = await _key(client, owner, role="viewer")
    events = (await client.get("/api/v1/audit?action=api_key.created", headers=bearer(owner))).json()
    assert [e["target"] for e in events] == [created["id"]]
