"""Sign-up and sign-in: validation, enumeration, brute force, hashing (checklist 6-8)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from litestar.testing import AsyncTestClient

from apprun.app import create_app, wiring_of
from apprun.auth.service import Auth
from apprun.testing.engines import redis_address
from tests.support.accounts import PASSWORD, bearer, register, unique_email
from tests.support.live import LiveServer
from tests.support.scenarios import Case, case_ids, run

REGISTRATION_REFUSALS = [
    Case(
        "password too short",
        "POST",
        "/auth/register",
        body={"email": "short@example.com", "password": "abc"},
        status=400,
        code="auth.weak_password",
        events=[],
    ),
    Case(
        "password equals the email",
        "POST",
        "/auth/register",
        body={"email": "same@example.com", "password": "same@example.com"},
        status=400,
        code="auth.weak_password",
        events=[],
    ),
    Case(
        "not an email",
        "POST",
        "/auth/register",
        body={"email": "not-an-email", "password": PASSWORD},
        status=400,
        code="auth.invalid_email",
        events=[],
    ),
    Case(
        "mass assignment of privileges",
        "POST",
        "/auth/register",
        body={"email": "mass@example.com", "password": PASSWORD, "is_platform_admin": True},
        status=400,
        code="request.invalid",
        events=[],
    ),
    Case(
        "missing password",
        "POST",
        "/auth/register",
        body={"email": "nopw@example.com"},
        status=400,
        code="request.invalid",
        events=[],
    ),
    Case(
        "weak password message in Chinese",
        "POST",
        "/auth/register",
        headers={"Accept-Language": "zh-CN"},
        body={"email": "zh@example.com", "password": "abc"},
        status=400,
        code="auth.weak_password",
        events=[],
        contains=["密码强度不足"],
    ),
]


@pytest.mark.parametrize("case", REGISTRATION_REFUSALS, ids=case_ids)
async def test_registration_refusals_leave_nothing(client: Any, db: Any, case: Case) -> None:
    await run(client, case, db)
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM apprun_users") == 0
        assert await conn.fetchval("SELECT count(*) FROM apprun_tenants") == 0


async def test_email_is_unique_case_insensitively(client: Any) -> None:
    await register(client, "Dup@Example.com")
    r = await client.post("/auth/register", json={"email": "dup@example.COM", "password": PASSWORD})
    assert r.status_code == 409
    assert r.json()["code"] == "auth.email_taken"


async def test_registration_makes_a_personal_tenant_with_seeded_roles(client: Any) -> None:
    tokens = await register(client, name="Grace")
    tenants = (await client.get("/api/v1/tenants", headers=bearer(tokens))).json()
    assert len(tenants) == 1
    assert tenants[0] == {**tenants[0], "personal": True, "role": "owner", "active": True, "name": "Grace's workspace"}
    roles = {r["name"] for r in (await client.get("/api/v1/roles", headers=bearer(tokens))).json()}
    assert roles == {"owner", "admin", "member", "viewer"}


@pytest.mark.checklist(7)
async def test_unknown_email_and_wrong_password_look_the_same(client: Any, app: Any) -> None:
    email = (await register(client))["user"]["email"]
    calls: list[str | None] = []
    passwords = wiring_of(app).get(Auth).passwords
    original = passwords.verify

    async def spy(stored: str | None, password: str) -> Any:
        calls.append(stored)
        return await original(stored, password)

    passwords.verify = spy
    wrong = await client.post("/auth/login", json={"email": email, "password": "not the password"})
    unknown = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "not the password"})
    passwords.verify = original
    assert wrong.status_code == unknown.status_code == 400
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert (
        strip(wrong)
        == strip(unknown)
        == {
            "code": "auth.invalid_credentials",
            "message": "Invalid email or password.",
            "details": None,
            "hint": None,
        }
    )
    # The unknown email was checked against the dummy hash: the same argon2 work.
    assert len(calls) == 2
    assert calls[0] is not None
    assert calls[1] is None


@pytest.mark.checklist(8)
async def test_passwords_are_argon2id_with_owasp_parameters(client: Any, db: Any) -> None:
    tokens = await register(client)
    async with db.read() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM apprun_users WHERE id = $1", tokens["user"]["id"])
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


@pytest.mark.checklist(8)
async def test_weaker_hashes_are_upgraded_on_login(client: Any, db: Any) -> None:
    tokens = await register(client)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET password_hash = $1 WHERE id = $2", weak, tokens["user"]["id"])
    r = await client.post("/auth/login", json={"email": tokens["user"]["email"], "password": PASSWORD})
    assert r.status_code == 200
    async with db.read() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM apprun_users WHERE id = $1", tokens["user"]["id"])
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_failed_logins_are_audited(client: Any, db: Any) -> None:
    email = (await register(client))["user"]["email"]
    await client.post("/auth/login", json={"email": email, "password": "nope nope nope"})
    await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    async with db.read() as conn:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM apprun_audit_log ORDER BY id")]
    assert actions == ["user.registered", "login.failed", "login.succeeded"]


@pytest.fixture(params=["memory", "redis"])
async def limited_client(request: pytest.FixtureRequest, make_settings: Any, database_url: str) -> Any:
    settings = make_settings(
        database_url=database_url,
        auth_rate_limit_account="3/900",
        auth_rate_limit_ip="8/60",
        rate_limit_backend=request.param,
        redis_host=redis_address()[0],
        redis_port=redis_address()[1],
        redis_prefix=f"test-{uuid.uuid4().hex}",
    )
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.checklist(6)
async def test_brute_force_on_one_account_is_stopped(limited_client: Any) -> None:
    email = (await register(limited_client))["user"]["email"]
    for _ in range(3):
        r = await limited_client.post("/auth/login", json={"email": email, "password": "wrong wrong wrong"})
        assert r.status_code == 400
    # The right password does not get through either until the window passes.
    r = await limited_client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 429
    assert r.json()["code"] == "auth.too_many_attempts"
    assert int(r.headers["retry-after"]) > 0


async def test_one_address_is_limited_across_accounts(limited_client: Any) -> None:
    await register(limited_client)  # 1 request of 8
    statuses = []
    for i in range(8):
        r = await limited_client.post("/auth/login", json={"email": f"who{i}@example.com", "password": "x" * 10})
        statuses.append(r.status_code)
    assert statuses[:7] == [400] * 7
    assert statuses[7] == 429


@pytest.mark.checklist(6)
async def test_spoofed_forwarded_for_does_not_reset_the_limit(limited_client: Any) -> None:
    await register(limited_client)
    statuses = []
    for i in range(8):
        r = await limited_client.post(
            "/auth/login",
            json={"email": f"who{i}@example.com", "password": "x" * 10},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
        statuses.append(r.status_code)
    assert statuses[-1] == 429


@pytest.mark.checklist(6)
def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    import httpx

    env = {"AUTH_RATE_LIMIT_IP": "2/60", "HTTP_TRUSTED_PROXIES": "127.0.0.1"}
    with LiveServer(tmp_path, env) as server:

        def attempt(ip: str) -> int:
            body = {"email": unique_email(), "password": "x" * 10}
            return httpx.post(server.url + "/auth/login", json=body, headers={"X-Forwarded-For": ip}).status_code

        assert [attempt("198.51.100.1") for _ in range(3)] == [400, 400, 429]
        # A different client behind the same trusted proxy has its own budget.
        assert attempt("198.51.100.2") == 400


async def test_signup_can_be_closed(make_settings: Any, database_url: str) -> None:
    settings = make_settings(database_url=database_url, auth_signup_enabled=False)
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as c:
        r = await c.post("/auth/register", json={"email": "x@example.com", "password": PASSWORD})
        assert r.status_code == 403
        assert r.json()["code"] == "auth.signup_disabled"
