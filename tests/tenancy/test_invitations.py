"""Adding a member is an invitation the invitee accepts (checklist 37, issue 10), on SQLite and PostgreSQL.

``POST /api/v1/tenants/{T}/members`` must not tell whether an address has an
account: every user owns a tenant, so any user (or their service key) could
ask. Every caller but a platform admin gets the same reply for a registered
and an unknown address, a mail goes to both, and nobody becomes a member
before accepting with the mailed token (``POST /api/v1/invitations/accept``,
signed in as that address). Tenant admins list and revoke pending
invitations.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from apprun.kernel.db import Database
from tests.support.accounts import bearer, invitation_token, join, make_admin, register, unique_email
from tests.support.scenarios import Case, run_all
from tests.support.smtp import answer_of

pytestmark = pytest.mark.checklist(37)

ACCEPT = "/api/v1/invitations/accept"
PLACEHOLDER = "<email>"


def _members(tenant: str) -> str:
    return f"/api/v1/tenants/{tenant}/members"


def _invitations(tenant: str) -> str:
    return f"/api/v1/tenants/{tenant}/invitations"


async def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    return reply.json() if reply.content else None


async def _member_ids(db: Database, tenant: str) -> set[str]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT user_id FROM apprun_memberships WHERE tenant_id = $1", tenant)
    return {r["user_id"] for r in rows}


async def _invite_mails(db: Database, email: str) -> int:
    async with db.read() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM apprun_mail_outbox WHERE recipient = $1 AND kind = 'invite'", email
        )
    return int(count)


async def _audit_actions(client: Any, owner: dict[str, Any]) -> list[str]:
    rows = await _ok(await client.get("/api/v1/audit?limit=100", headers=bearer(owner)))
    return [r["action"] for r in rows]


def _alike(reply: Any, email: str) -> tuple[int, Any, dict[str, str]]:
    """What a caller sees of a reply, with the address it asked about taken out."""
    status, body, headers = answer_of(reply)
    return status, {k: PLACEHOLDER if v == email else v for k, v in body.items()}, headers


def _same_length_addresses() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"known-{tag}@example.com", f"fresh-{tag}@example.com"


# --- one answer for a registered and an unknown address --------------------------------------------


async def _as_owner(client: Any, db: Database, owner: dict[str, Any]) -> dict[str, str]:
    return bearer(owner)


async def _as_tenant_admin(client: Any, db: Database, owner: dict[str, Any]) -> dict[str, str]:
    admin = await register(client)
    await join(client, db, owner, admin, "admin")
    return bearer(
        await _ok(await client.post("/auth/tenant", json={"tenant_id": owner["tenant_id"]}, headers=bearer(admin)))
    )


async def _key(client: Any, owner: dict[str, Any], **body: Any) -> dict[str, str]:
    created = await _ok(await client.post("/api/v1/api-keys", json={"name": "k", **body}, headers=bearer(owner)), 201)
    return {"apikey": created["key"]}


async def _as_service_key(client: Any, db: Database, owner: dict[str, Any]) -> dict[str, str]:
    return await _key(client, owner, kind="service")


async def _as_admin_api_key(client: Any, db: Database, owner: dict[str, Any]) -> dict[str, str]:
    return await _key(client, owner, role="admin")


async def _as_platform_admin(client: Any, db: Database, owner: dict[str, Any]) -> dict[str, str]:
    return bearer(await make_admin(client, db))


@dataclass(frozen=True)
class Caller:
    name: str
    headers: Callable[[Any, Database, dict[str, Any]], Awaitable[dict[str, str]]]
    #: The reply's status for a registered address: "invited" like any, or (platform admins) "added" at once.
    registered: str = "invited"


CALLERS = [
    Caller("tenant owner", _as_owner),
    Caller("tenant admin", _as_tenant_admin),
    # Any user can make a service key for their personal tenant: it must not become the oracle.
    Caller("service key", _as_service_key),
    Caller("api key with the admin role", _as_admin_api_key),
    Caller("platform admin", _as_platform_admin, registered="added"),
]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c.name)
async def test_a_registered_and_an_unknown_address_are_answered_alike(
    client: Any, db: Database, caller: Caller
) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    known, unknown = _same_length_addresses()
    person = await register(client, known)
    headers = await caller.headers(client, db, owner)
    members_before = await _member_ids(db, tenant)

    for_known = await client.post(_members(tenant), json={"email": known, "role": "member"}, headers=headers)
    for_unknown = await client.post(_members(tenant), json={"email": unknown, "role": "member"}, headers=headers)

    assert for_unknown.status_code == 201, for_unknown.text
    assert for_unknown.json() == {"email": unknown, "role": "member", "status": "invited"}
    assert await _invite_mails(db, unknown) == 1
    if caller.registered == "added":
        # The deployment's operator, who lists every user anyway, adds one at once.
        assert for_known.status_code == 201, for_known.text
        assert for_known.json() == {
            "user_id": person["user"]["id"],
            "email": known,
            "role": "member",
            "status": "added",
        }
        assert await _member_ids(db, tenant) == members_before | {person["user"]["id"]}
        assert await _invite_mails(db, known) == 0
        return

    # Status, headers and body: nothing but the address tells the two apart; both got a mail.
    assert _alike(for_known, known) == _alike(for_unknown, unknown)
    assert await _invite_mails(db, known) == 1
    # The registered person is not a member before accepting, and nobody's view says otherwise.
    assert await _member_ids(db, tenant) == members_before
    listed = await _ok(await client.get(_members(tenant), headers=bearer(owner)))
    assert known not in {m["email"] for m in listed}
    mine = await _ok(await client.get("/api/v1/tenants", headers=bearer(person)))
    assert tenant not in {t["id"] for t in mine}
    pending = await _ok(await client.get(_invitations(tenant), headers=bearer(owner)))
    assert {p["email"] for p in pending} == {known, unknown}


async def test_inviting_a_member_again_is_409_only_for_who_can_read_the_members(client: Any, db: Database) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    member = await register(client)
    await join(client, db, owner, member)
    # A custom role that may manage members but not read the list: it learns nothing from the answer.
    await _ok(await client.post("/api/v1/roles", json={"name": "recruiter"}, headers=bearer(owner)), 201)
    grant = {"role": "recruiter", "object": "members", "action": "admin"}
    await _ok(await client.post("/api/v1/policies", json=grant, headers=bearer(owner)), 201)
    recruiter = await register(client)
    await join(client, db, owner, recruiter, "recruiter")
    as_recruiter = bearer(
        await _ok(await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(recruiter)))
    )
    assert (await client.get(_members(tenant), headers=as_recruiter)).status_code == 403

    email = member["user"]["email"]
    again = await client.post(_members(tenant), json={"email": email, "role": "viewer"}, headers=bearer(owner))
    assert (again.status_code, again.json()["code"]) == (409, "tenancy.already_member")
    stranger = unique_email("stranger")
    for_member = await client.post(_members(tenant), json={"email": email, "role": "viewer"}, headers=as_recruiter)
    for_stranger = await client.post(_members(tenant), json={"email": stranger, "role": "viewer"}, headers=as_recruiter)
    assert for_member.status_code == for_stranger.status_code == 201, (for_member.text, for_stranger.text)
    assert set(for_member.json()) == set(for_stranger.json()) == {"email", "role", "status"}
    assert for_member.json()["status"] == for_stranger.json()["status"] == "invited"
    # Accepting it changes nothing: the member keeps the role they had.
    token = await invitation_token(db, email)
    accepted = await _ok(await client.post(ACCEPT, json={"token": token}, headers=bearer(member)))
    assert (accepted["tenant_id"], accepted["role"]) == (tenant, "member")


# --- accepting --------------------------------------------------------------------------------------


async def test_the_invited_user_accepts_and_joins(client: Any, db: Database) -> None:
    owner = await register(client)
    team = await _ok(await client.post("/api/v1/tenants", json={"name": "Acme"}, headers=bearer(owner)), 201)
    person = await register(client)
    email = person["user"]["email"]
    invited = await client.post(_members(team["id"]), json={"email": email, "role": "viewer"}, headers=bearer(owner))
    assert invited.status_code == 201, invited.text
    # The mail's link leads to the site's invitation page, which signs in or signs up.
    async with db.read() as conn:
        body = await conn.fetchval(
            "SELECT body FROM apprun_mail_outbox WHERE recipient = $1 AND kind = 'invite'", email
        )
    assert "/auth/invitation?token=" in body
    assert "sign in" in body
    token = await invitation_token(db, email)

    accepted = await _ok(await client.post(ACCEPT, json={"token": token}, headers=bearer(person)))
    assert accepted == {"tenant_id": team["id"], "tenant_name": "Acme", "role": "viewer"}
    mine = await _ok(await client.get("/api/v1/tenants", headers=bearer(person)))
    assert {(t["id"], t["role"]) for t in mine} == {(person["tenant_id"], "owner"), (team["id"], "viewer")}
    switched = await _ok(await client.post("/auth/tenant", json={"tenant_id": team["id"]}, headers=bearer(person)))
    assert (switched["tenant_id"], switched["roles"]) == (team["id"], ["viewer"])
    members = await _ok(await client.get(_members(team["id"]), headers=bearer(owner)))
    assert (email, "viewer") in {(m["email"], m["role"]) for m in members}
    assert await _ok(await client.get(_invitations(team["id"]), headers=bearer(owner))) == []
    owner_in_team = await _ok(await client.post("/auth/tenant", json={"tenant_id": team["id"]}, headers=bearer(owner)))
    actions = await _audit_actions(client, owner_in_team)
    assert {"member.invited", "invitation.accepted", "member.added"} <= set(actions)


@dataclass
class Invited:
    client: Any
    db: Database
    owner: dict[str, Any]
    person: dict[str, Any]
    token: str

    @property
    def tenant(self) -> str:
        return str(self.owner["tenant_id"])

    async def accept(self, tokens: dict[str, Any]) -> Any:
        return await self.client.post(ACCEPT, json={"token": self.token}, headers=bearer(tokens))


async def _someone_else(world: Invited) -> dict[str, Any]:
    """Another signed-in user holds the token: the invitation is for an address, not a bearer."""
    return await register(world.client)


async def _reused(world: Invited) -> dict[str, Any]:
    """Used once, then the member removed: the token does not bring them back."""
    await _ok(await world.accept(world.person))
    path = f"{_members(world.tenant)}/{world.person['user']['id']}"
    await _ok(await world.client.delete(path, headers=bearer(world.owner)), 204)
    return world.person


async def _expired(world: Invited) -> dict[str, Any]:
    async with world.db.transaction() as conn:
        await conn.execute(
            "UPDATE apprun_one_time_tokens SET expires_at = created_at WHERE kind = 'invite' AND email = $1",
            world.person["user"]["email"],
        )
    return world.person


async def _revoked(world: Invited) -> dict[str, Any]:
    [pending] = await _ok(await world.client.get(_invitations(world.tenant), headers=bearer(world.owner)))
    path = f"{_invitations(world.tenant)}/{pending['id']}"
    await _ok(await world.client.delete(path, headers=bearer(world.owner)), 204)
    return world.person


async def _replaced(world: Invited) -> dict[str, Any]:
    """Invited again: only the newest link works."""
    body = {"email": world.person["user"]["email"], "role": "member"}
    await _ok(await world.client.post(_members(world.tenant), json=body, headers=bearer(world.owner)), 201)
    return world.person


@pytest.mark.parametrize("spoil", [_someone_else, _reused, _expired, _revoked, _replaced], ids=lambda f: f.__name__[1:])
async def test_an_invitation_that_does_not_hold_is_400_and_joins_nobody(
    client: Any, db: Database, spoil: Callable[[Invited], Awaitable[dict[str, Any]]]
) -> None:
    owner, person = await register(client), await register(client)
    email = person["user"]["email"]
    await _ok(await client.post(_members(owner["tenant_id"]), json={"email": email}, headers=bearer(owner)), 201)
    world = Invited(client, db, owner, person, await invitation_token(db, email))
    holder = await spoil(world)

    refused = await world.accept(holder)
    assert (refused.status_code, refused.json()["code"]) == (400, "auth.invalid_invitation"), refused.text
    assert await _member_ids(db, world.tenant) == {owner["user"]["id"]}
    if spoil is _someone_else:
        # Refused to the wrong person, the invitation is still the invitee's to accept.
        assert (await world.accept(person)).status_code == 200


async def test_accepting_needs_a_signed_in_person(client: Any, db: Database) -> None:
    owner, person = await register(client), await register(client)
    email = person["user"]["email"]
    await _ok(await client.post(_members(owner["tenant_id"]), json={"email": email}, headers=bearer(owner)), 201)
    token = await invitation_token(db, email)
    anonymous = await client.post(ACCEPT, json={"token": token})
    assert anonymous.status_code == 401, anonymous.text
    key = await _key(client, person, kind="service")
    assert (await client.post(ACCEPT, json={"token": token}, headers=key)).status_code == 401
    assert await _member_ids(db, owner["tenant_id"]) == {owner["user"]["id"]}


# --- listing and revoking -----------------------------------------------------------------------------


async def test_who_may_list_and_revoke_invitations(client: Any, db: Database) -> None:
    owner, viewer, outsider = await register(client), await register(client), await register(client)
    tenant = owner["tenant_id"]
    await join(client, db, owner, viewer, "viewer")
    as_viewer = bearer(await _ok(await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(viewer))))
    invitee = unique_email("invitee")
    body = {"email": invitee, "role": "member"}
    await _ok(await client.post(_members(tenant), json=body, headers=bearer(owner)), 201)
    [pending] = await _ok(await client.get(_invitations(tenant), headers=bearer(owner)))
    assert set(pending) == {"id", "email", "role", "invited_by", "created_at", "expires_at"}
    assert (pending["email"], pending["role"], pending["invited_by"]) == (invitee, "member", owner["user"]["id"])
    one = f"{_invitations(tenant)}/{pending['id']}"
    # Another tenant's owner, through their own tenant: the id is not theirs.
    theirs = f"{_invitations(outsider['tenant_id'])}/{pending['id']}"
    token = await invitation_token(db, invitee)

    revoked = ["apprun.tenant.invitation_revoked"]
    cases = [
        Case("viewer lists", "GET", _invitations(tenant), headers=as_viewer, json=[{"email": invitee}], absent=[token]),
        Case("viewer revokes", "DELETE", one, headers=as_viewer, status=403, code="auth.forbidden", events=[]),
        Case("outsider lists", "GET", _invitations(tenant), headers=bearer(outsider), status=404),
        Case("outsider revokes", "DELETE", one, headers=bearer(outsider), status=404, events=[]),
        Case("outsider revokes via own tenant", "DELETE", theirs, headers=bearer(outsider), status=404,
             code="tenancy.invitation_not_found", events=[]),
        Case("anonymous lists", "GET", _invitations(tenant), status=401),
        Case("owner revokes an unknown id", "DELETE", f"{_invitations(tenant)}/nope", headers=bearer(owner),
             status=404, code="tenancy.invitation_not_found", events=[]),
        Case("owner revokes", "DELETE", one, headers=bearer(owner), status=204, events=revoked),
        Case("owner revokes again", "DELETE", one, headers=bearer(owner), status=404,
             code="tenancy.invitation_not_found", events=[]),
        Case("owner lists", "GET", _invitations(tenant), headers=bearer(owner), json=[]),
    ]  # fmt: skip
    await run_all(client, cases, db)
    assert "invitation.revoked" in await _audit_actions(client, owner)


async def test_a_deactivated_tenant_takes_no_one_in_until_it_is_back(client: Any, db: Database) -> None:
    owner, person, operator = await register(client), await register(client), await make_admin(client, db)
    tenant, email = owner["tenant_id"], person["user"]["email"]
    await _ok(await client.post(_members(tenant), json={"email": email}, headers=bearer(owner)), 201)
    token = await invitation_token(db, email)
    tenant_path = f"/api/v1/tenants/{tenant}"
    await _ok(await client.patch(tenant_path, json={"disabled": True}, headers=bearer(operator)))

    refused = await client.post(ACCEPT, json={"token": token}, headers=bearer(person))
    assert (refused.status_code, refused.json()["code"]) == (403, "auth.tenant_disabled"), refused.text
    assert await _member_ids(db, tenant) == {owner["user"]["id"]}
    # Not used up: once the tenant is back, the same link works.
    await _ok(await client.patch(tenant_path, json={"disabled": False}, headers=bearer(operator)))
    assert (await _ok(await client.post(ACCEPT, json={"token": token}, headers=bearer(person))))["tenant_id"] == tenant
