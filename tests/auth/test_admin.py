"""Platform admins (created on the CLI), /api/v1/users, and the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.accounts import PASSWORD, bearer, login, register

ADMIN_PASSWORD = "admin passphrase for tests"


def _cli(tmp_path: Path, database_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "JWT_"))}
    return subprocess.run(
        [sys.executable, "-m", "apprun", *args],
        capture_output=True,
        text=True,
        env={**clean, "APPRUN_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, **(env or {})},
        cwd=tmp_path,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def _admin(client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    out = _cli(tmp_path, database_url, "admin", "create", "root@example.com", "--password", ADMIN_PASSWORD)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "created" in out.stdout
    return await login(client, "root@example.com", ADMIN_PASSWORD)


async def test_admin_create_needs_a_password_and_never_defaults(client: Any, tmp_path: Path, database_url: str) -> None:
    out = _cli(tmp_path, database_url, "admin", "create", "root@example.com")
    assert out.returncode == 2
    assert "no password given" in out.stderr
    weak = _cli(tmp_path, database_url, "admin", "create", "root@example.com", "--password", "short")
    assert weak.returncode == 2
    via_env = _cli(
        tmp_path, database_url, "admin", "create", "env@example.com", env={"APPRUN_ADMIN_PASSWORD": ADMIN_PASSWORD}
    )
    assert via_env.returncode == 0, via_env.stderr
    tokens = await login(client, "env@example.com", ADMIN_PASSWORD)
    assert tokens["user"]["is_platform_admin"] is True


async def test_promoting_an_existing_user(client: Any, tmp_path: Path, database_url: str) -> None:
    user = await register(client, "someone@example.com")
    out = _cli(tmp_path, database_url, "admin", "create", "someone@example.com", "--password", ADMIN_PASSWORD)
    assert out.returncode == 0
    assert "promoted" in out.stdout
    assert (await client.get("/auth/me", headers=bearer(user))).json()["is_platform_admin"] is True


async def test_platform_admin_manages_users(client: Any, tmp_path: Path, database_url: str) -> None:
    admin = await _admin(client, tmp_path, database_url)
    h = bearer(admin)
    created = await client.post("/api/v1/users", json={"email": "New@Example.com", "password": PASSWORD}, headers=h)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "new@example.com"
    assert (await client.post("/api/v1/users", json={"email": "new@example.com"}, headers=h)).status_code == 409
    bad = await client.post("/api/v1/users", json={"email": "x@example.com", "tenant_id": "t"}, headers=h)
    assert bad.status_code == 400
    found = (await client.get("/api/v1/users?email=new@", headers=h)).json()
    assert [u["id"] for u in found] == [user["id"]]
    signed_in = await login(client, "new@example.com")
    disabled = await client.patch(f"/api/v1/users/{user['id']}", json={"disabled": True}, headers=h)
    assert disabled.json()["disabled"] is True
    assert (await client.get("/auth/me", headers=bearer(signed_in))).status_code == 401
    r = await client.post("/auth/login", json={"email": "new@example.com", "password": PASSWORD})
    assert r.status_code == 403
    assert r.json()["code"] == "auth.user_disabled"
    assert (await client.delete(f"/api/v1/users/{user['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=h)).status_code == 404
    assert (await client.delete(f"/api/v1/users/{admin['user']['id']}", headers=h)).status_code == 400


async def test_platform_admin_reads_every_audit_event(client: Any, tmp_path: Path, database_url: str) -> None:
    alice = await register(client)
    bob = await register(client)
    admin = await _admin(client, tmp_path, database_url)
    own = (await client.get("/api/v1/audit", headers=bearer(alice))).json()
    assert {e["tenant_id"] for e in own} == {alice["tenant_id"]}
    everything = (await client.get("/api/v1/audit?limit=200", headers=bearer(admin))).json()
    assert {alice["tenant_id"], bob["tenant_id"]} <= {e["tenant_id"] for e in everything}
    registered = (await client.get("/api/v1/audit?action=user.registered", headers=bearer(admin))).json()
    assert all(e["action"] == "user.registered" for e in registered)
    # Newest first, and paged with `before`.
    page = (await client.get("/api/v1/audit?limit=1", headers=bearer(admin))).json()
    older = (await client.get(f"/api/v1/audit?limit=1&before={page[0]['id']}", headers=bearer(admin))).json()
    assert older[0]["id"] < page[0]["id"]
