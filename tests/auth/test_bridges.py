"""Identity bridges: external OIDC tokens and Ory Kratos sessions (SQLite and PostgreSQL).

A real OIDC issuer and a real Kratos ``/sessions/whoami`` run on loopback
(`tests.support.fake_idp`); apprun is configured with their addresses and
driven through its HTTP API, so what is proved is what a deployment gets:
the external identity becomes an apprun user (linked in
``apprun_identities``), a member of the tenant it names with the role it
names, and every forged, expired or unknown credential is a 401 — never a
500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.auth.bridges import OidcVerifier
from apprun.kernel.errors import Unauthorized
from apprun.modules import Settings
from apprun.testing.engines import free_port
from tests.support.accounts import PASSWORD, bearer, register, unique_email
from tests.support.fake_idp import FakeKratos, FakeOidcProvider, SigningKey, ed25519_key, kratos_session, rsa_key
from tests.support.live import LiveServer
from tests.support.sql import rows

AUDIENCE = "apprun-api"
CHALLENGE = 'Bearer error="invalid_token"'


@pytest.fixture
def issuer() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider(keys=[rsa_key("rsa-1"), ed25519_key("ed-1")]) as idp:
        yield idp


@pytest.fixture
def kratos() -> Iterator[FakeKratos]:
    with FakeKratos() as server:
        yield server


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, issuer: FakeOidcProvider, kratos: FakeKratos
) -> Settings:
    """conftest's `app` and `client` are built from these: both bridges on."""
    return make_settings(
        database_url=database_url,
        auth_oidc_issuer=issuer.issuer,
        auth_oidc_jwks_url=issuer.jwks_url,
        auth_oidc_audience=AUDIENCE,
        kratos_public_url=kratos.url,
    )


@contextlib.asynccontextmanager
async def _client_for(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as c:
        yield c


def _oidc(issuer: FakeOidcProvider, key: SigningKey | None = None, **claims: Any) -> dict[str, str]:
    """Authorization headers with a token of ``issuer`` for apprun's audience."""
    claims.setdefault("aud", AUDIENCE)
    claims.setdefault("sub", "ext-" + unique_email("sub"))
    return bearer(issuer.mint(key, **claims))


async def _me(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _explain(client: Any, headers: dict[str, str], action: str) -> dict[str, Any]:
    r = await client.get(
        "/api/v1/authz/explain", params={"action": action, "object": "collection:posts"}, headers=headers
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _rows(app: Litestar, sql: str, *args: Any) -> list[dict[str, Any]]:
    return await rows(app.state.runtime.settings, sql, *args)


# --- OIDC: the happy paths -------------------------------------------------


async def test_oidc_token_maps_user_tenant_and_role_and_the_role_follows_the_claim(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    tenant = (await register(client))["tenant_id"]
    email = unique_email("oidc")
    sub = "ext-user-42"

    def token(roles: list[str]) -> dict[str, str]:
        return _oidc(issuer, sub=sub, email=email, email_verified=True, tenant_id=tenant, roles=roles, name="Ext")

    me = await _me(client, token(["viewer"]))
    assert (me["email"], me["tenant_id"], me["roles"], me["name"]) == (email, tenant, ["viewer"], "Ext")
    assert me["email_verified"] is True
    read = await _explain(client, token(["viewer"]), "read")
    assert read["allowed"] is True
    assert (read["tenant_id"], read["subject"], read["roles"]) == (tenant, me["id"], ["viewer"])
    assert read["rule"]["role"] == "viewer"
    assert (await _explain(client, token(["viewer"]), "create"))["allowed"] is False

    # Created on first sight, once, and linked by (provider, subject).
    links = await _rows(app, "SELECT user_id, provider, email FROM apprun_identities WHERE subject = $1", sub)
    assert links == [{"user_id": me["id"], "provider": f"oidc:{issuer.issuer}", "email": email}]

    # The issuer is the authority: a new roles claim moves the membership, and back again.
    for roles, may_create in ((["member"], True), (["viewer"], False), (["member"], True)):
        again = await _me(client, token(roles))
        assert (again["id"], again["tenant_id"], again["roles"]) == (me["id"], tenant, roles)
        assert (await _explain(client, token(roles), "create"))["allowed"] is may_create, roles
    members = await _rows(
        app, "SELECT role FROM apprun_memberships WHERE tenant_id = $1 AND user_id = $2", tenant, me["id"]
    )
    assert members == [{"role": "member"}]
    assert len(await _rows(app, "SELECT id FROM apprun_users WHERE email = $1", email)) == 1


async def test_an_eddsa_token_without_tenant_claim_gets_a_personal_tenant(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    email = unique_email("ed")
    headers = _oidc(issuer, issuer.keys[1], email=email, email_verified=True)
    me = await _me(client, headers)
    assert me["email"] == email
    assert me["tenant_id"] is not None
    assert me["roles"] == ["owner"]
    tenants = await _rows(app, "SELECT personal FROM apprun_tenants WHERE id = $1", me["tenant_id"])
    assert [bool(t["personal"]) for t in tenants] == [True]
    assert (await _me(client, headers))["tenant_id"] == me["tenant_id"]  # not a second workspace


async def test_a_roles_claim_may_be_a_space_separated_string(client: Any, issuer: FakeOidcProvider) -> None:
    tenant = (await register(client))["tenant_id"]
    me = await _me(client, _oidc(issuer, email=unique_email(), tenant_id=tenant, roles="viewer"))
    assert me["roles"] == ["viewer"]


async def test_without_a_roles_claim_an_existing_membership_keeps_its_role(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    # The tenant's only owner signs in through the issuer, which says nothing about roles:
    # silence must not demote them (a tenant always keeps an owner).
    email = unique_email("owner")
    owner = await register(client, email)
    me = await _me(client, _oidc(issuer, email=email, email_verified=True, tenant_id=owner["tenant_id"]))
    assert (me["tenant_id"], me["roles"]) == (owner["tenant_id"], ["owner"])
    # A newcomer named into the same tenant without roles joins as a member.
    newcomer = await _me(client, _oidc(issuer, email=unique_email(), tenant_id=owner["tenant_id"]))
    assert newcomer["roles"] == ["member"]


# --- OIDC: what is refused ---------------------------------------------------


async def test_unknown_tenant_or_role_is_403_and_creates_nothing(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    tenant = (await register(client))["tenant_id"]
    cases = [
        ({"tenant_id": "no-such-tenant", "roles": ["viewer"]}, "auth.unknown_tenant"),
        ({"tenant_id": tenant, "roles": ["superuser"]}, "auth.unknown_role"),
    ]
    for claims, code in cases:
        email = unique_email("refused")
        r = await client.get("/auth/me", headers=_oidc(issuer, email=email, email_verified=True, **claims))
        assert (r.status_code, r.json()["code"]) == (403, code), r.text
        assert await _rows(app, "SELECT id FROM apprun_users WHERE email = $1", email) == []


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled by hand: HS256 over ``hmac_key``, or unsigned (alg=none) without one."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest() if hmac_key is not None else b""
    return f"{signing_input}.{_b64(sig)}"


def _claims(issuer: FakeOidcProvider, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer.issuer,
        "aud": AUDIENCE,
        "sub": "mallory",
        "email": "mallory@example.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
        **extra,
    }


def _public_pem(issuer: FakeOidcProvider) -> bytes:
    public = issuer.keys[0].private.public_key()
    pem: bytes = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem


@dataclass(frozen=True)
class Forgery:
    name: str
    make: Callable[[FakeOidcProvider], str]
    code: str = "auth.invalid_token"


_STRANGER = rsa_key("rsa-1")  # same kid as the issuer's key, but not the issuer's key
FORGERIES = [
    Forgery("wrong audience", lambda i: i.mint(sub="m", aud="someone-else")),
    Forgery("no audience", lambda i: i.mint(sub="m")),
    Forgery(
        "signed by a key not in the JWKS (kid of a published key)", lambda i: i.mint(_STRANGER, sub="m", aud=AUDIENCE)
    ),
    Forgery("signed by a key not in the JWKS (its own kid)", lambda i: i.mint(rsa_key("rogue"), sub="m", aud=AUDIENCE)),
    Forgery("unknown kid", lambda i: i.mint(sub="m", aud=AUDIENCE, headers={"kid": "no-such-kid"})),
    Forgery(
        "expired",
        lambda i: i.mint(sub="m", aud=AUDIENCE, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "auth.token_expired",
    ),
    Forgery("not yet valid", lambda i: i.mint(sub="m", aud=AUDIENCE, nbf=int(time.time()) + 3600)),
    Forgery("no subject", lambda i: i.mint(aud=AUDIENCE)),
    Forgery("no expiry", lambda i: i.mint(sub="m", aud=AUDIENCE, drop=("exp",))),
    Forgery(
        "RS256 signature under the Ed25519 key's kid", lambda i: i.mint(sub="m", aud=AUDIENCE, headers={"kid": "ed-1"})
    ),
    Forgery(
        "HS256 with the issuer's public key as the secret",
        lambda i: _hand_made({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, _claims(i), _public_pem(i)),
    ),
    Forgery("HS256 with any secret", lambda i: _hand_made({"alg": "HS256", "typ": "JWT"}, _claims(i), b"guess")),
    Forgery("alg=none", lambda i: _hand_made({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, _claims(i), None)),
    Forgery("alg=none without kid", lambda i: _hand_made({"alg": "none"}, _claims(i), None)),
    Forgery("signature stripped", lambda i: i.mint(sub="m", aud=AUDIENCE).rsplit(".", 1)[0] + "."),
    Forgery(
        "payload swapped under a valid signature",
        lambda i: ".".join(
            [
                i.mint(sub="m", aud=AUDIENCE).split(".")[0],
                _b64(json.dumps(_claims(i, sub="admin")).encode()),
                i.mint(sub="m", aud=AUDIENCE).split(".")[2],
            ]
        ),
    ),
]


async def test_forged_expired_or_foreign_oidc_tokens_are_401_never_500(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    # One app for the whole table (each row is a request, none writes): the same
    # verifier, with its JWKS cache warm after the first row, answers them all.
    problems = []
    for forgery in FORGERIES:
        r = await client.get("/auth/me", headers=bearer(forgery.make(issuer)))
        challenge = r.headers.get("www-authenticate", "")
        body = r.json()
        if r.status_code != 401 or CHALLENGE not in challenge or body.get("code") != forgery.code:
            problems.append(f"{forgery.name}: {r.status_code} {challenge!r} {r.text[:200]}")
    assert not problems, "\n".join(problems)
    assert await _rows(app, "SELECT id FROM apprun_identities") == []
    # The verifier still accepts the genuine article afterwards.
    assert (await _me(client, _oidc(issuer, email=unique_email())))["email"]


async def test_a_local_account_is_linked_only_when_the_issuer_verified_the_email(
    client: Any, app: Litestar, issuer: FakeOidcProvider
) -> None:
    email = unique_email("local")
    local = await _me(client, bearer(await register(client, email)))
    for verified in (False, "true", None):  # only the JSON boolean true counts
        claims: dict[str, Any] = {"email_verified": verified} if verified is not None else {}
        r = await client.get("/auth/me", headers=_oidc(issuer, sub="claimant", email=email.upper(), **claims))
        assert (r.status_code, r.json()["code"]) == (401, "auth.identity_conflict"), (verified, r.text)
    assert await _rows(app, "SELECT id FROM apprun_identities") == []

    me = await _me(client, _oidc(issuer, sub="claimant", email=email, email_verified=True))
    assert me["id"] == local["id"]
    # Once linked, the subject is the key: later tokens need no verified email.
    assert (await _me(client, _oidc(issuer, sub="claimant", email=email, email_verified=False)))["id"] == local["id"]


async def test_an_unreachable_jwks_is_503_not_500(
    make_settings: Callable[..., Settings], database_url: str, issuer: FakeOidcProvider
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    settings = make_settings(
        database_url=database_url, auth_oidc_issuer=issuer.issuer, auth_oidc_jwks_url=dead, auth_oidc_audience=AUDIENCE
    )
    async with _client_for(settings) as client:
        r = await client.get("/auth/me", headers=_oidc(issuer, email=unique_email()))
        assert (r.status_code, r.json()["code"]) == (503, "auth.identity_provider_unavailable"), r.text


def _verifier(issuer: FakeOidcProvider, *, refresh_interval: float, max_age: float) -> OidcVerifier:
    return OidcVerifier(
        issuer=issuer.issuer,
        jwks_url=issuer.jwks_url,
        audience=AUDIENCE,
        email_claim="email",
        tenant_claim="tenant_id",
        roles_claim="roles",
        leeway=10,
        refresh_interval=refresh_interval,
        max_age=max_age,
    )


async def test_the_jwks_is_refetched_for_a_rotated_key_and_a_removed_key_stops_working(
    issuer: FakeOidcProvider,
) -> None:
    # No database: the verifier alone, against the live issuer.
    old, new = issuer.keys[0], rsa_key("rsa-2")
    eager = _verifier(issuer, refresh_interval=0, max_age=3600)
    assert (await eager.verify(issuer.mint(old, sub="a", aud=AUDIENCE))).subject == "a"
    issuer.keys = [old, new]  # rotation: the new key is published, then used
    assert (await eager.verify(issuer.mint(new, sub="b", aud=AUDIENCE))).subject == "b"
    assert issuer.jwks_fetches == 2

    # An unknown kid does not make every request a JWKS fetch: at most one per interval.
    calm = _verifier(issuer, refresh_interval=3600, max_age=3600)
    await calm.verify(issuer.mint(new, sub="c", aud=AUDIENCE))
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await calm.verify(issuer.mint(rsa_key("rsa-3"), sub="d", aud=AUDIENCE))
    assert issuer.jwks_fetches == 3

    # A key the issuer withdrew (leaked, retired) is refused once the cached JWKS is stale.
    short = _verifier(issuer, refresh_interval=3600, max_age=0)
    assert (await short.verify(issuer.mint(old, sub="e", aud=AUDIENCE))).subject == "e"
    issuer.keys = [new]
    with pytest.raises(Unauthorized):
        await short.verify(issuer.mint(old, sub="f", aud=AUDIENCE))


# --- Kratos -----------------------------------------------------------------


async def test_a_kratos_session_token_maps_user_tenant_and_roles(
    client: Any, app: Litestar, kratos: FakeKratos
) -> None:
    tenant = (await register(client))["tenant_id"]
    email = unique_email("kratos")
    session = kratos_session(email=email, metadata_public={"tenant_id": tenant, "roles": ["viewer"]})
    kratos.tokens["ory_st_viewer"] = session
    headers = {"X-Session-Token": "ory_st_viewer"}

    me = await _me(client, headers)
    assert (me["email"], me["tenant_id"], me["roles"], me["email_verified"]) == (email, tenant, ["viewer"], True)
    read = await _explain(client, headers, "read")
    assert (read["allowed"], read["subject"], read["roles"]) == (True, me["id"], ["viewer"])
    assert (await _explain(client, headers, "create"))["allowed"] is False
    links = await _rows(
        app, "SELECT user_id, provider FROM apprun_identities WHERE subject = $1", session["identity"]["id"]
    )
    assert links == [{"user_id": me["id"], "provider": "kratos"}]
    assert kratos.calls[0].session_token == "ory_st_viewer"
    assert kratos.calls[0].cookie is None


async def test_a_kratos_session_cookie_maps_user_tenant_and_roles(client: Any, kratos: FakeKratos) -> None:
    tenant = (await register(client))["tenant_id"]
    email = unique_email("cookie")
    cookie = "MTY5NzQ2Mzk1NnxEdi1CQkFFQ180SUFBUkFCRUFBQVJfLUNBQUVHYzNSeWFXNW5EQThBRFhObGMz"
    kratos.cookies[cookie] = kratos_session(email=email, metadata_public={"tenant_id": tenant, "roles": ["member"]})
    headers = {"Cookie": f"theme=dark; ory_kratos_session={cookie}"}
    me = await _me(client, headers)
    assert (me["email"], me["tenant_id"], me["roles"]) == (email, tenant, ["member"])
    assert (await _explain(client, headers, "create"))["allowed"] is True
    assert kratos.calls[0].session_token is None
    assert kratos.calls[0].cookie == cookie


async def test_roles_and_tenant_in_kratos_traits_are_not_trusted(
    client: Any, app: Litestar, kratos: FakeKratos
) -> None:
    # Kratos lets every user edit their own traits (the settings flow); only
    # metadata_public is admin-controlled. A trait must not buy a role in a tenant.
    victim = (await register(client))["tenant_id"]
    kratos.tokens["ory_st_self_promoted"] = kratos_session(
        email=unique_email("mallory"), traits={"tenant_id": victim, "roles": ["owner"]}
    )
    me = await _me(client, {"X-Session-Token": "ory_st_self_promoted"})
    assert me["tenant_id"] != victim
    assert (
        await _rows(app, "SELECT role FROM apprun_memberships WHERE tenant_id = $1 AND user_id = $2", victim, me["id"])
        == []
    )


async def test_a_kratos_address_verified_in_another_case_links_the_local_account(
    client: Any, kratos: FakeKratos
) -> None:
    email = unique_email("carol")
    local = await _me(client, bearer(await register(client, email)))
    kratos.tokens["ory_st_carol"] = kratos_session(email=email.title(), address=email)
    assert (await _me(client, {"X-Session-Token": "ory_st_carol"}))["id"] == local["id"]

    other = unique_email("dave")
    await register(client, other)
    kratos.tokens["ory_st_dave"] = kratos_session(email=other, verified=False)
    r = await client.get("/auth/me", headers={"X-Session-Token": "ory_st_dave"})
    assert (r.status_code, r.json()["code"]) == (401, "auth.identity_conflict"), r.text


async def test_unknown_inactive_or_expired_kratos_sessions_are_401(client: Any, kratos: FakeKratos) -> None:
    kratos.tokens["ory_st_inactive"] = kratos_session(email=unique_email(), active=False)
    kratos.tokens["ory_st_expired"] = kratos_session(email=unique_email(), expires_in=-60)
    cases = {
        "unknown token": {"X-Session-Token": "ory_st_nobody"},
        "unknown cookie": {"Cookie": "ory_kratos_session=nobody"},
        "inactive": {"X-Session-Token": "ory_st_inactive"},
        "expired": {"X-Session-Token": "ory_st_expired"},
    }
    for name, headers in cases.items():
        r = await client.get("/auth/me", headers=headers)
        assert r.status_code == 401, (name, r.text)
        assert CHALLENGE in r.headers.get("www-authenticate", ""), name
    # Asked every time: a refusal is not cached as if it were a session.
    r = await client.get("/auth/me", headers=cases["unknown token"])
    assert r.status_code == 401
    assert [c.session_token for c in kratos.calls].count("ory_st_nobody") == 2


async def test_an_ailing_kratos_is_503_not_500(client: Any, kratos: FakeKratos) -> None:
    kratos.tokens["ory_st_ok"] = kratos_session(email=unique_email())
    kratos.fail_with = 500
    r = await client.get("/auth/me", headers={"X-Session-Token": "ory_st_ok"})
    assert (r.status_code, r.json()["code"]) == (503, "auth.identity_provider_unavailable"), r.text


async def test_an_unreachable_kratos_is_503_not_500(make_settings: Callable[..., Settings], database_url: str) -> None:
    settings = make_settings(database_url=database_url, kratos_public_url=f"http://127.0.0.1:{free_port()}")
    async with _client_for(settings) as client:
        for headers in ({"X-Session-Token": "ory_st_x"}, {"Cookie": "ory_kratos_session=x"}):
            r = await client.get("/auth/me", headers=headers)
            assert (r.status_code, r.json()["code"]) == (503, "auth.identity_provider_unavailable"), r.text
            assert "127.0.0.1" not in r.text


@pytest.mark.slow
async def test_parallel_first_requests_of_a_new_identity_make_one_user(
    tmp_path: Path, make_settings: Callable[..., Settings], database_url: str, issuer: FakeOidcProvider
) -> None:
    # A single-page app fires its first calls in parallel with a fresh token. The
    # in-process test client serves one request at a time, so this needs a real
    # server: apprun under granian.
    env = {
        "DATABASE_URL": database_url,
        "AUTH_OIDC_ISSUER": issuer.issuer,
        "AUTH_OIDC_JWKS_URL": issuer.jwks_url,
        "AUTH_OIDC_AUDIENCE": AUDIENCE,
    }
    with LiveServer(tmp_path, env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post("/auth/register", json={"email": unique_email(), "password": PASSWORD})
            assert r.status_code == 201, r.text
            tenant = r.json()["tenant_id"]
            rounds = [
                ("new-a", {}),  # a new user and their personal tenant
                ("new-b", {"tenant_id": tenant, "roles": ["viewer"]}),  # a new user and a membership
                ("new-a", {"tenant_id": tenant, "roles": ["member"]}),  # a known user, a new membership
            ]
            for sub, claims in rounds:
                headers = _oidc(issuer, sub=sub, email=f"{sub}@example.com", email_verified=True, **claims)
                replies = await asyncio.gather(*(http.get("/auth/me", headers=headers) for _ in range(6)))
                assert [r.status_code for r in replies] == [200] * 6, [r.text[:200] for r in replies]
                assert len({r.json()["id"] for r in replies}) == 1
    settings = make_settings(database_url=database_url)
    links = await rows(settings, "SELECT subject FROM apprun_identities ORDER BY subject")
    assert [link["subject"] for link in links] == ["new-a", "new-b"]
    members = await rows(settings, "SELECT role FROM apprun_memberships WHERE tenant_id = $1 ORDER BY role", tenant)
    assert [m["role"] for m in members] == ["member", "owner", "viewer"]
