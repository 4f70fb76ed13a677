"""`Authenticator.recheck`: does the credential an earlier request was authenticated with still hold, now?

Long-lived connections (event streams, realtime) authenticate once and call
`recheck` at an interval; it must see, in the database, what the per-request
check would refuse on the next request: a logged-out session, a removed
member, a deactivated tenant, an expired token, a revoked API key. Both
databases. The authenticator here is built on the test's own pool (the app's
pool belongs to the app's loop); tokens come from the running app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from apprun.auth.api_keys import ApiKeys
from apprun.auth.authn import TOKEN_EXP, Authenticator
from apprun.auth.tokens import TokenKeys
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.modules import Settings
from apprun.rbac.service import Rbac
from tests.support.accounts import bearer, join, register

pytestmark = pytest.mark.checklist(31, 33)


class _KeysWithoutTouch(ApiKeys):
    """The test's copy of the key store records no use: its write would run on the test's loop,
    which the in-process client blocks while the app serves a request, so a row lock it held
    then would stall the app's own write to that key (a revoke) until the statement timeout."""

    def _touch(self, key_id: str) -> None:  # noqa: ARG002 - overrides ApiKeys._touch
        return


@pytest.fixture
async def authn(settings: Settings, db: Database) -> AsyncIterator[Authenticator]:
    keys = TokenKeys(
        algorithm=settings.auth_jwt_algorithm,
        secret=settings.jwt_secret_value(),
        private_key_file=settings.auth_jwt_private_key_file,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        ttl=settings.auth_access_ttl,
        leeway=settings.auth_jwt_leeway,
    )
    authenticator = Authenticator(db, keys, _KeysWithoutTouch(db, Rbac(db)))
    yield authenticator
    await authenticator.api_keys.close()


async def _ctx(authn: Authenticator, credential: str) -> RequestContext:
    ctx = RequestContext(request_id="recheck-test")
    await authn.authenticate(ctx, {"authorization": f"Bearer {credential}"})
    return ctx


async def _member(client: Any, db: Database, owner: dict[str, Any], role: str = "member") -> dict[str, Any]:
    """A user added to ``owner``'s tenant and switched into it."""
    person = await register(client)
    tenant = owner["tenant_id"]
    await join(client, db, owner, person, role)
    switched = await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(person))
    assert switched.status_code == 200, switched.text
    data: dict[str, Any] = switched.json()
    return data


async def _set_tenant_disabled(db: Database, tenant_id: str, disabled: bool) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE apprun_tenants SET disabled_at = CASE WHEN $2 THEN updated_at END WHERE id = $1",
            tenant_id,
            disabled,
        )


Change = Callable[[Any, Database, dict[str, Any], dict[str, Any]], Awaitable[None]]


async def _logout(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    assert (await client.post("/auth/logout", headers=bearer(member))).status_code == 204


async def _remove(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    path = f"/api/v1/tenants/{owner['tenant_id']}/members/{member['user']['id']}"
    assert (await client.delete(path, headers=bearer(owner))).status_code == 204


async def _disable_tenant(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    await _set_tenant_disabled(db, owner["tenant_id"], True)


async def _delete_tenant(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM apprun_tenants WHERE id = $1", owner["tenant_id"])


async def _disable_user(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET disabled_at = created_at WHERE id = $1", member["user"]["id"])


async def _lower_role(client: Any, db: Database, owner: dict[str, Any], member: dict[str, Any]) -> None:
    path = f"/api/v1/tenants/{owner['tenant_id']}/members/{member['user']['id']}"
    assert (await client.patch(path, json={"role": "viewer"}, headers=bearer(owner))).status_code == 200


JWT_CASES = [
    pytest.param(_logout, "auth.session_revoked", id="logout"),
    pytest.param(_remove, "auth.membership_revoked", id="removed-from-tenant"),
    pytest.param(_disable_tenant, "auth.tenant_disabled", id="tenant-deactivated"),
    pytest.param(_delete_tenant, "auth.membership_revoked", id="tenant-deleted"),
    pytest.param(_disable_user, "auth.session_revoked", id="user-disabled"),
    # A lower role is still a membership: the credential holds (the role is re-read per request).
    pytest.param(_lower_role, None, id="role-lowered"),
]


@pytest.mark.parametrize(("change", "code"), JWT_CASES)
async def test_recheck_of_an_own_token(
    client: Any, db: Database, authn: Authenticator, change: Change, code: str | None
) -> None:
    owner = await register(client)
    member = await _member(client, db, owner)
    ctx = await _ctx(authn, member["access_token"])
    assert ctx.extra[TOKEN_EXP] == member["expires_at"]
    assert await authn.recheck(ctx) is None
    await change(client, db, owner, member)
    assert await authn.recheck(ctx) == code


async def test_recheck_sees_the_access_token_expire(client: Any, settings: Settings, authn: Authenticator) -> None:
    owner = await register(client)
    ctx = await _ctx(authn, owner["access_token"])
    assert await authn.recheck(ctx) is None
    # The session outlives the access token: a stream opened with it ends with the token.
    ctx.extra[TOKEN_EXP] = int(ctx.extra[TOKEN_EXP]) - settings.auth_access_ttl - authn.keys.leeway - 1
    assert await authn.recheck(ctx) == "auth.token_expired"


async def test_recheck_of_a_platform_admin_outside_their_tenant(
    client: Any, db: Database, authn: Authenticator
) -> None:
    """A platform admin may act in any tenant: losing the membership does not end their token; deactivation does."""
    owner = await register(client)
    admin = await _member(client, db, owner, role="admin")
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET is_platform_admin = $2 WHERE id = $1", admin["user"]["id"], True)
    ctx = await _ctx(authn, admin["access_token"])
    await _remove(client, db, owner, admin)
    assert await authn.recheck(ctx) is None
    await _set_tenant_disabled(db, owner["tenant_id"], True)
    assert await authn.recheck(ctx) == "auth.tenant_disabled"


@pytest.mark.parametrize("kind", ["standard", "service"])
async def test_recheck_of_an_api_key(client: Any, db: Database, authn: Authenticator, kind: str) -> None:
    owner = await register(client)
    body = {"name": "ci", "kind": kind, **({"role": "viewer"} if kind == "standard" else {})}
    created = (await client.post("/api/v1/api-keys", json=body, headers=bearer(owner))).json()
    ctx = await _ctx(authn, created["key"])
    assert await authn.recheck(ctx) is None
    await _set_tenant_disabled(db, owner["tenant_id"], True)
    assert await authn.recheck(ctx) == "auth.tenant_disabled"
    await _set_tenant_disabled(db, owner["tenant_id"], False)
    assert await authn.recheck(ctx) is None
    assert (await client.delete(f"/api/v1/api-keys/{created['id']}", headers=bearer(owner))).status_code == 204
    assert await authn.recheck(ctx) == "auth.invalid_api_key"


async def test_recheck_of_an_anonymous_context(authn: Authenticator) -> None:
    assert await authn.recheck(RequestContext(request_id="anonymous")) is None
