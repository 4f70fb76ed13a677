"""Identities from elsewhere (OIDC, Kratos) are refused in a deactivated tenant too (SQLite and PostgreSQL).

The issuer names the tenant; apprun maps the identity (and caches the mapping
for seconds), then checks the tenant on every request, so deactivation acts
at once for these users as well, and reactivation lets them back in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apprun.kernel.db import Database
from apprun.modules import Settings
from tests.support.accounts import bearer, make_admin, register, unique_email
from tests.support.fake_idp import FakeKratos, FakeOidcProvider, kratos_session, rsa_key

pytestmark = pytest.mark.checklist(31)

AUDIENCE = "apprun-api"


@pytest.fixture
def issuer() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider(keys=[rsa_key("rsa-1")]) as idp:
        yield idp


@pytest.fixture
def kratos() -> Iterator[FakeKratos]:
    with FakeKratos() as server:
        yield server


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, issuer: FakeOidcProvider, kratos: FakeKratos
) -> Settings:
    return make_settings(
        database_url=database_url,
        auth_oidc_issuer=issuer.issuer,
        auth_oidc_jwks_url=issuer.jwks_url,
        auth_oidc_audience=AUDIENCE,
        kratos_public_url=kratos.url,
    )


@pytest.mark.parametrize("bridge", ["oidc", "kratos"])
async def test_an_external_identity_is_refused_in_a_deactivated_tenant(
    client: Any, db: Database, issuer: FakeOidcProvider, kratos: FakeKratos, bridge: str
) -> None:
    admin = await make_admin(client, db)
    tenant = (await register(client))["tenant_id"]
    email = unique_email(bridge)
    if bridge == "oidc":
        token = issuer.mint(None, aud=AUDIENCE, sub="ext-1", email=email, email_verified=True, tenant_id=tenant)
        headers = bearer(token)
    else:
        kratos.tokens["ory_st_1"] = kratos_session(email=email, metadata_public={"tenant_id": tenant})
        headers = {"X-Session-Token": "ory_st_1"}
    assert (await client.get("/auth/me", headers=headers)).status_code == 200

    async def deactivate(disabled: bool) -> None:
        r = await client.patch(f"/api/v1/tenants/{tenant}", json={"disabled": disabled}, headers=bearer(admin))
        assert r.status_code == 200, r.text

    await deactivate(True)
    refused = await client.get("/auth/me", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (401, "auth.tenant_disabled")
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    await deactivate(False)
    assert (await client.get("/auth/me", headers=headers)).status_code == 200
