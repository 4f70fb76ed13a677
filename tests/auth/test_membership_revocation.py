"""Checklist 31: membership, role and tenant changes take effect on the next request (SQLite and PostgreSQL).

The world: tenant T (its owner, and a member with the ``admin`` role signed in
there), an API key and a service key of T, rows of T in an
``authenticated``-rule collection (``docs``), an ``owner``-rule one
(``notes``) and an ``rbac``-rule one (``reports``). Each test changes one
thing — the member is removed, their role is lowered, T is deactivated or
deleted — and runs a table of requests with the credentials people already
hold. Placeholders (``$tenant``, ``$member_doc`` …) are filled from the world,
and ``actor`` names whose credential a request carries (the member's unless
named). A refused request writes nothing, events included (``events=[]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from apprun.auth.api_keys import ApiKeys
from apprun.auth.authn import Authenticator
from apprun.auth.tokens import TokenKeys
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.modules import Settings
from apprun.rbac.service import Rbac
from tests.support.accounts import bearer, join, login, make_admin, register
from tests.support.scenarios import Case, run_all
from tests.support.schema import define

pytestmark = pytest.mark.checklist(31)

ALL = dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated")
OWNER = {"list": "owner", "view": "owner", "create": "authenticated", "update": "owner", "delete": "owner"}
RBAC = dict.fromkeys(("list", "view", "create", "update", "delete"), "rbac")
COLLECTIONS = [
    {"name": "docs", "fields": [{"name": "title", "type": "text"}], "rules": ALL},
    {"name": "notes", "fields": [{"name": "title", "type": "text"}], "rules": OWNER},
    {"name": "reports", "fields": [{"name": "title", "type": "text"}], "rules": RBAC},
]
#: What a 401 says in its WWW-Authenticate header.
CHALLENGE = re.compile(re.escape('Bearer error="invalid_token"') + ".*")


@dataclass
class World:
    client: Any
    db: Database
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def prepare(self, case: Case) -> Case:
        """The row filled in from the world, sent with its actor's credentials (the member's by default)."""
        case = case.filled(self.values).with_credentials(self.credentials[case.actor or "member"])
        if case.status == 401:
            case = replace(case, response_headers={"www-authenticate": CHALLENGE, **case.response_headers})
        return case

    def remember(self, who: str, tokens: dict[str, Any]) -> None:
        self.tokens[who] = tokens
        self.credentials[who] = bearer(tokens)

    async def count(self, table: str, tenant: str) -> int:
        async with self.db.read() as conn:
            return int(await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE tenant_id = $1', tenant))  # noqa: S608


async def _join(
    client: Any, db: Database, owner: dict[str, Any], person: dict[str, Any], *, tenant: str, role: str
) -> dict[str, Any]:
    """``person`` made a member of ``tenant`` with ``role`` (invited, accepting) and switched into it."""
    await join(client, db, owner, person, role, tenant=tenant)
    switched = await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(person))
    assert switched.status_code == 200, switched.text
    data: dict[str, Any] = switched.json()
    return data


async def _row(client: Any, headers: dict[str, str], collection: str, title: str) -> str:
    r = await client.post(
        f"/data/{collection}", json={"title": title}, headers={**headers, "Prefer": "return=representation"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()[0]["id"])


async def _key(client: Any, owner: dict[str, Any], **body: Any) -> str:
    r = await client.post("/api/v1/api-keys", json={"name": "ci", **body}, headers=bearer(owner))
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@pytest.fixture
async def world(client: Any, db: Database) -> World:
    admin = await make_admin(client, db)
    for definition in COLLECTIONS:
        await define(client, admin, definition)
    owner = await register(client)
    tenant = owner["tenant_id"]
    member_personal = await register(client)
    member = await _join(client, db, owner, member_personal, tenant=tenant, role="admin")
    world = World(client, db)
    world.remember("admin", admin)
    world.remember("owner", owner)
    world.remember("member", member)
    world.credentials["api_key"] = {"apikey": await _key(client, owner, role="member")}
    world.credentials["service_key"] = {"apikey": await _key(client, owner, kind="service")}
    world.values = {
        "tenant": tenant,
        "member_id": member["user"]["id"],
        "member_personal": member_personal["tenant_id"],
        "member_doc": await _row(client, bearer(member), "docs", "TANGO member doc"),
        "member_note": await _row(client, bearer(member), "notes", "TANGO member note"),
        "owner_doc": await _row(client, bearer(owner), "docs", "TANGO owner doc"),
        "report": await _row(client, bearer(owner), "reports", "TANGO report"),
    }
    return world


async def run_table(world: World, cases: list[Case]) -> None:
    """Every case, then every failure at once."""
    await run_all(world.client, cases, world.db, prepare=world.prepare)


def _refused(code: str, actor: str = "member") -> list[Case]:
    """Every kind of request a credential of T could make, each refused with ``code``."""
    r = {"status": 401, "code": code, "actor": actor, "events": []}
    return [
        Case(f"{actor}: list an authenticated-rule collection", "GET", "/data/docs", **r),
        Case(f"{actor}: read their own doc", "GET", "/data/docs/$member_doc", **r),
        Case(f"{actor}: create a doc", "POST", "/data/docs", body={"title": "after"}, **r),
        Case(f"{actor}: update their own doc", "PATCH", "/data/docs/$member_doc", body={"title": "after"}, **r),
        Case(f"{actor}: update the owner's doc", "PATCH", "/data/docs/$owner_doc", body={"title": "after"}, **r),
        Case(f"{actor}: list an owner-rule collection", "GET", "/data/notes", **r),
        Case(f"{actor}: read their own note", "GET", "/data/notes/$member_note", **r),
        Case(f"{actor}: update their own note", "PATCH", "/data/notes/$member_note", body={"title": "after"}, **r),
        Case(f"{actor}: create a note", "POST", "/data/notes", body={"title": "after"}, **r),
        Case(f"{actor}: read an rbac-rule collection", "GET", "/data/reports", **r),
        Case(f"{actor}: list my tenants", "GET", "/api/v1/tenants", **r),
        Case(f"{actor}: read the tenant", "GET", "/api/v1/tenants/$tenant", **r),
        Case(f"{actor}: list its members", "GET", "/api/v1/tenants/$tenant/members", **r),
        Case(f"{actor}: read its events", "GET", "/api/v1/events", **r),
        Case(f"{actor}: publish an event", "POST", "/api/v1/events", body={"type": "app.x", "data": {}}, **r),
    ]


def _allowed(actor: str) -> list[Case]:
    return [
        Case(f"{actor}: list docs", "GET", "/data/docs", actor=actor, events=[]),
        Case(f"{actor}: read a doc", "GET", "/data/docs/$owner_doc", actor=actor, events=[]),
        Case(f"{actor}: list events", "GET", "/api/v1/events", actor=actor, events=[]),
    ]


async def _unchanged(world: World) -> None:
    """The refused writes wrote nothing."""
    tenant = world.values["tenant"]
    assert (await world.count("docs", tenant), await world.count("notes", tenant)) == (2, 1)
    async with world.db.read() as conn:
        titles = {r["title"] for r in await conn.fetch("SELECT title FROM docs WHERE tenant_id = $1", tenant)}
    assert titles == {"TANGO member doc", "TANGO owner doc"}


async def _refresh(world: World, who: str) -> dict[str, Any]:
    r = await world.client.post("/auth/refresh", json={"refresh_token": world.tokens[who]["refresh_token"]})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


# --- removed from the tenant ------------------------------------------------------------------------
async def test_a_removed_member_loses_the_tenant_on_the_next_request(world: World) -> None:
    client, v = world.client, world.values
    removed = await client.delete(
        f"/api/v1/tenants/{v['tenant']}/members/{v['member_id']}", headers=world.credentials["owner"]
    )
    assert removed.status_code == 204
    await run_table(world, [*_refused("auth.membership_revoked"), *_allowed("owner"), *_allowed("api_key")])
    await _unchanged(world)
    # The refresh token cannot bring the membership back: the session goes back to their own tenant.
    back = await _refresh(world, "member")
    assert (back["tenant_id"], back["roles"]) == (v["member_personal"], ["owner"])
    world.remember("member", back)
    await run_table(
        world,
        [
            Case("back home: docs are their own tenant's", "GET", "/data/docs", absent=("TANGO",)),
            Case("back home: T's doc is not found", "GET", "/data/docs/$owner_doc", status=404),
            Case(
                "back home: switching into T",
                "POST",
                "/auth/tenant",
                body={"tenant_id": "$tenant"},
                status=404,
                events=[],
            ),
        ],
    )


async def test_a_member_who_leaves_loses_the_tenant_too(world: World) -> None:
    left = await world.client.post(
        f"/api/v1/tenants/{world.values['tenant']}/leave", headers=world.credentials["member"]
    )
    assert left.status_code == 204
    await run_table(world, _refused("auth.membership_revoked")[:3])


async def test_a_platform_admin_keeps_acting_in_a_tenant_they_left(world: World, db: Database) -> None:
    """Platform admins may act in any tenant (RBAC and the data API let them): membership is not their key."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE apprun_users SET is_platform_admin = $2 WHERE id = $1", world.values["member_id"], True
        )
    v = world.values
    removed = await world.client.delete(
        f"/api/v1/tenants/{v['tenant']}/members/{v['member_id']}", headers=world.credentials["owner"]
    )
    assert removed.status_code == 204
    await run_table(world, [*_allowed("member"), Case("admin reads a report", "GET", "/data/reports/$report")])
    # Their refresh keeps the tenant as well.
    assert (await _refresh(world, "member"))["tenant_id"] == v["tenant"]


# --- role lowered -----------------------------------------------------------------------------------
async def test_a_lowered_role_acts_on_the_next_request(world: World, settings: Settings, db: Database) -> None:
    v = world.values
    before = [
        Case(
            "admin creates a report",
            "POST",
            "/data/reports",
            body={"title": "by admin"},
            status=201,
            events=["apprun.record.created"],
        ),
        Case("admin reads the members", "GET", "/api/v1/tenants/$tenant/members"),
    ]
    await run_table(world, before)
    lowered = await world.client.patch(
        f"/api/v1/tenants/{v['tenant']}/members/{v['member_id']}",
        json={"role": "viewer"},
        headers=world.credentials["owner"],
    )
    assert lowered.status_code == 200
    forbidden = {"status": 403, "events": []}
    await run_table(
        world,
        [
            Case("viewer reads reports", "GET", "/data/reports"),
            Case(
                "viewer cannot create a report",
                "POST",
                "/data/reports",
                body={"title": "x"},
                code="data.forbidden",
                **forbidden,
            ),
            Case("viewer cannot update a report", "PATCH", "/data/reports/$report", body={"title": "x"}, **forbidden),
            Case(
                "viewer cannot add members",
                "POST",
                "/api/v1/tenants/$tenant/members",
                body={"email": "x@example.com"},
                **forbidden,
            ),
            Case(
                "viewer cannot rename the tenant", "PATCH", "/api/v1/tenants/$tenant", body={"name": "x"}, **forbidden
            ),
            Case(
                "viewer cannot make API keys",
                "POST",
                "/api/v1/api-keys",
                body={"name": "k", "role": "owner"},
                **forbidden,
            ),
        ],
    )
    # The request's roles are the membership's now, not the token's `roles` claim (still "admin").
    ctx = await _authenticate(settings, db, world.tokens["member"]["access_token"])
    assert ctx.roles == ("viewer",)


async def _authenticate(settings: Settings, db: Database, token: str) -> RequestContext:
    keys = TokenKeys(
        algorithm=settings.auth_jwt_algorithm,
        secret=settings.jwt_secret_value(),
        private_key_file=settings.auth_jwt_private_key_file,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        ttl=settings.auth_access_ttl,
        leeway=settings.auth_jwt_leeway,
    )
    ctx = RequestContext(request_id="membership-test")
    await Authenticator(db, keys, ApiKeys(db, Rbac(db))).authenticate(ctx, {"authorization": f"Bearer {token}"})
    return ctx


# --- tenant deactivated -------------------------------------------------------------------------------
async def _set_disabled(world: World, disabled: bool, actor: str = "admin") -> Any:
    return await world.client.patch(
        f"/api/v1/tenants/{world.values['tenant']}", json={"disabled": disabled}, headers=world.credentials[actor]
    )


async def test_a_deactivated_tenant_refuses_every_credential_until_reactivated(world: World) -> None:
    # Only a platform admin deactivates: not even the tenant's owner.
    refused = await _set_disabled(world, True, actor="owner")
    assert (refused.status_code, refused.json()["code"]) == (403, "auth.platform_admin_only")
    done = await _set_disabled(world, True)
    assert done.status_code == 200, done.text
    assert done.json()["disabled"] is True
    disabled = "auth.tenant_disabled"
    await run_table(
        world,
        [
            *_refused(disabled, "member"),
            *_refused(disabled, "owner")[:3],
            *_refused(disabled, "api_key")[:3],
            *_refused(disabled, "service_key")[:3],
        ],
    )
    await _unchanged(world)
    assert (await _set_disabled(world, False)).json()["disabled"] is False
    await run_table(world, [*_allowed("member"), *_allowed("owner"), *_allowed("api_key"), *_allowed("service_key")])


async def test_no_refresh_or_switch_into_a_deactivated_tenant(world: World) -> None:
    v = world.values
    assert (await _set_disabled(world, True)).status_code == 200
    # The refresh moves the session to their own tenant; the owner, whose only tenant T is, to none.
    member = await _refresh(world, "member")
    assert member["tenant_id"] == v["member_personal"]
    owner = await _refresh(world, "owner")
    assert (owner["tenant_id"], owner["roles"]) == (None, [])
    world.remember("member", member)
    world.remember("owner", owner)
    switch = Case("switch into T", "POST", "/auth/tenant", body={"tenant_id": "$tenant"})
    await run_table(
        world,
        [
            replace(switch, status=403, code="auth.tenant_disabled", events=[]),
            # Its members still see it, marked, and may read it; only a platform admin changes it.
            Case("read T", "GET", "/api/v1/tenants/$tenant"),
            Case(
                "rename T",
                "PATCH",
                "/api/v1/tenants/$tenant",
                body={"name": "x"},
                status=403,
                code="tenancy.tenant_disabled",
                events=[],
            ),
            Case(
                "add a member to T",
                "POST",
                "/api/v1/tenants/$tenant/members",
                body={"email": "x@example.com"},
                status=403,
                events=[],
            ),
            Case(
                "delete T",
                "DELETE",
                "/api/v1/tenants/$tenant",
                actor="owner",
                status=403,
                code="tenancy.tenant_disabled",
                events=[],
            ),
        ],
    )
    mine = (await world.client.get("/api/v1/tenants", headers=world.credentials["member"])).json()
    assert {t["id"]: t["disabled"] for t in mine} == {v["tenant"]: True, v["member_personal"]: False}
    assert (await world.client.get(f"/api/v1/tenants/{v['tenant']}", headers=world.credentials["member"])).json()[
        "disabled"
    ]
    # A new sign-in does not start there either.
    assert (await login(world.client, owner["user"]["email"]))["tenant_id"] is None
    assert (await _set_disabled(world, False)).status_code == 200
    await run_table(world, [switch])


async def test_deactivating_an_unknown_tenant_is_404(world: World) -> None:
    world.values["tenant"] = "01a00000-0000-7000-8000-000000000000"
    r = await _set_disabled(world, True)
    assert (r.status_code, r.json()["code"]) == (404, "tenancy.tenant_not_found")


# --- tenant deleted ---------------------------------------------------------------------------------
async def test_a_deleted_tenant_refuses_its_tokens(world: World) -> None:
    client, v = world.client, world.values
    team = (await client.post("/api/v1/tenants", json={"name": "Team"}, headers=world.credentials["owner"])).json()
    world.remember(
        "owner",
        (await client.post("/auth/tenant", json={"tenant_id": team["id"]}, headers=world.credentials["owner"])).json(),
    )
    member = await _join(
        client, world.db, world.tokens["owner"], world.tokens["member"], tenant=team["id"], role="member"
    )
    world.remember("member", member)
    assert (await client.delete(f"/api/v1/tenants/{team['id']}", headers=world.credentials["owner"])).status_code == 204
    await run_table(world, _refused("auth.membership_revoked")[:3])
    assert (await _refresh(world, "member"))["tenant_id"] == v["member_personal"]
