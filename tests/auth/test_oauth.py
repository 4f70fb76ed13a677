"""Social login: OAuth2 authorization code + PKCE against an OIDC provider (SQLite and PostgreSQL).

The provider is real HTTP on loopback (`tests.support.fake_idp`): apprun
discovers it, sends the browser there, and exchanges the code at its token
endpoint, which checks the client's credentials and the PKCE verifier
against the challenge it was shown. The test plays the browser with httpx:
apprun's redirects are followed by hand, so every hop can be inspected.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.modules import Settings
from tests.support.accounts import bearer, register
from tests.support.fake_idp import FakeOidcProvider, rsa_key
from tests.support.sql import execute, rows

SITE = "http://testserver.local"  # the test client's own origin: apprun's public URL here
APP = "https://app.example/done"  # an allow-listed front end


def _callback(name: str) -> str:
    return f"{SITE}/auth/oauth/{name}/callback"


@pytest.fixture
def idp() -> Iterator[FakeOidcProvider]:
    """A confidential client's provider; it knows the callbacks of acme, beta and badsecret."""
    registered = tuple(_callback(n) for n in ("acme", "beta", "badsecret"))
    with FakeOidcProvider(redirect_uris=registered) as server:
        yield server


@pytest.fixture
def public_idp() -> Iterator[FakeOidcProvider]:
    """A public client's provider (no secret: PKCE alone protects the code)."""
    with FakeOidcProvider(client_id="apprun-spa", client_secret=None, redirect_uris=(_callback("pub"),)) as server:
        yield server


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    idp: FakeOidcProvider,
    public_idp: FakeOidcProvider,
) -> Settings:
    """conftest's `app` and `client` are built from these."""
    confidential = {"issuer": idp.issuer, "client_id": idp.client_id, "client_secret": idp.client_secret}
    providers = [
        {"name": "acme", **confidential},
        {"name": "beta", **confidential},
        {"name": "badsecret", **confidential, "client_secret": "not-the-secret"},
        {"name": "pub", "issuer": public_idp.issuer, "client_id": public_idp.client_id, "scopes": "openid email"},
    ]
    return make_settings(
        database_url=database_url,
        auth_site_url=SITE,
        http_public_url=SITE,
        auth_redirect_allowlist=[APP, "myapp://callback"],
        auth_oauth_providers=json.dumps(providers),
    )


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def _authorize(client: Any, name: str = "acme", redirect_to: str | None = None) -> str:
    """apprun's redirect to the provider (asserting the 302)."""
    params = {"redirect_to": redirect_to} if redirect_to is not None else {}
    r = await client.get(f"/auth/oauth/{name}/authorize", params=params, follow_redirects=False)
    assert r.status_code == 302, r.text
    location: str = r.headers["location"]
    return location


async def _at_provider(url: str) -> str:
    """The browser at the provider's authorization endpoint: where it is sent back to."""
    async with httpx.AsyncClient() as browser:
        r = await browser.get(url)
    assert r.status_code == 302, r.text
    location: str = r.headers["location"]
    return location


async def _login(client: Any, name: str = "acme", redirect_to: str | None = None) -> httpx.Response:
    """The whole dance; the reply of apprun's callback."""
    back = await _at_provider(await _authorize(client, name, redirect_to))
    reply: httpx.Response = await client.get(back, follow_redirects=False)
    return reply


def _fragment(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}


def _error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("code")


# --- the flow -----------------------------------------------------------------


async def test_social_login_sends_the_tokens_to_redirect_to_in_the_fragment(
    client: Any, app: Litestar, idp: FakeOidcProvider
) -> None:
    settings = app.state.runtime.settings
    to_provider = await _authorize(client, redirect_to=f"{SITE}/welcome?tab=1")
    assert to_provider.startswith(f"{idp.url}/authorize?")
    sent = _query(to_provider)
    assert sent["response_type"] == "code"
    assert sent["client_id"] == idp.client_id
    assert sent["redirect_uri"] == _callback("acme")
    assert sent["scope"] == "openid email profile"
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["code_challenge"]) == 43  # base64url of a SHA-256
    assert sent["state"]
    assert sent["nonce"]
    assert sent["state"] != sent["nonce"]
    # The challenge is of the verifier kept with the state (a fresh one per login).
    stored = await rows(
        settings, "SELECT code_verifier, nonce FROM apprun_oauth_states WHERE state = $1", sent["state"]
    )
    assert len(stored) == 1
    assert _s256(stored[0]["code_verifier"]) == sent["code_challenge"]
    assert stored[0]["nonce"] == sent["nonce"]

    back = await _at_provider(to_provider)
    assert back.startswith(_callback("acme") + "?")
    reply = await client.get(back, follow_redirects=False)
    assert reply.status_code == 302, reply.text
    location = reply.headers["location"]
    assert location.startswith(f"{SITE}/welcome?tab=1#")
    tokens = _fragment(location)
    assert tokens["token_type"] == "bearer"
    assert int(tokens["expires_in"]) > 0

    # The provider was asked once, by the client it knows, with the verifier of that challenge.
    [exchange] = idp.token_requests
    assert (exchange.status, exchange.client_auth) == (200, "basic")
    assert _s256(exchange.form["code_verifier"]) == sent["code_challenge"]
    assert exchange.form["redirect_uri"] == _callback("acme")

    r = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["email"], me["name"], me["email_verified"]) == (idp.user["email"], idp.user["name"], True)
    assert me["tenant_id"] is not None
    assert me["roles"] == ["owner"]  # a newcomer gets a personal workspace
    links = await rows(settings, "SELECT user_id, provider, subject FROM apprun_identities")
    assert links == [{"user_id": me["id"], "provider": "oauth:acme", "subject": idp.user["sub"]}]
    assert await rows(settings, "SELECT state FROM apprun_oauth_states WHERE state = $1", sent["state"]) == []

    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text


async def test_without_redirect_to_the_callback_answers_json_and_signs_in_the_same_user_again(
    client: Any, app: Litestar, idp: FakeOidcProvider
) -> None:
    first = await _login(client)
    assert first.status_code == 200, first.text
    body = first.json()
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(body)
    me = (await client.get("/auth/me", headers=bearer(body))).json()
    again = await _login(client)
    assert again.status_code == 200, again.text
    assert (await client.get("/auth/me", headers=bearer(again.json()))).json()["id"] == me["id"]
    users = await rows(app.state.runtime.settings, "SELECT id FROM apprun_users WHERE email = $1", idp.user["email"])
    assert len(users) == 1


async def test_a_public_client_logs_in_with_pkce_alone(client: Any, public_idp: FakeOidcProvider) -> None:
    sent = _query(await _authorize(client, "pub"))
    assert sent["scope"] == "openid email"
    r = await client.get(await _at_provider(await _authorize(client, "pub")), follow_redirects=False)
    assert r.status_code == 200, r.text
    [exchange] = public_idp.token_requests
    assert (exchange.status, exchange.client_auth, exchange.form["client_id"]) == (200, "none", "apprun-spa")


async def test_a_verified_social_email_links_the_existing_local_account(client: Any, idp: FakeOidcProvider) -> None:
    local = await register(client, idp.user["email"])
    local_id = (await client.get("/auth/me", headers=bearer(local))).json()["id"]
    r = await _login(client)
    assert r.status_code == 200, r.text
    assert (await client.get("/auth/me", headers=bearer(r.json()))).json()["id"] == local_id


async def test_an_unverified_social_email_does_not_take_over_a_local_account(
    client: Any, idp: FakeOidcProvider
) -> None:
    await register(client, idp.user["email"])
    idp.user["email_verified"] = False
    assert _error(await _login(client)) == (401, "auth.identity_conflict")


# --- refusals -------------------------------------------------------------------


REDIRECTS = [
    (SITE, 302),
    (f"{SITE}/", 302),
    (f"{SITE}/account/done?x=1", 302),
    (APP, 302),
    (f"{APP}/deeper", 302),
    ("myapp://callback", 302),
    ("https://evil.example/", 400),
    (f"{SITE}.evil.example/", 400),
    ("http://testserver.local@evil.example/", 400),
    ("http://testserver.local:8443/", 400),
    (f"{APP}x", 400),
    ("https://app.example/", 400),
    ("myapp://callbackx", 400),
    ("//evil.example/", 400),
    ("/relative", 400),
    ("javascript:alert(1)//http://testserver.local/", 400),
]


async def test_redirect_to_must_be_under_the_site_url_or_allow_listed(client: Any, app: Litestar) -> None:
    problems = []
    for redirect_to, status in REDIRECTS:
        r = await client.get("/auth/oauth/acme/authorize", params={"redirect_to": redirect_to}, follow_redirects=False)
        if r.status_code != status or (status == 400 and r.json()["code"] != "auth.redirect_not_allowed"):
            problems.append(f"{redirect_to}: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)
    # Refused addresses leave no state behind; allowed ones one each.
    states = await rows(app.state.runtime.settings, "SELECT redirect_to FROM apprun_oauth_states")
    assert sorted(s["redirect_to"] for s in states) == sorted(u for u, status in REDIRECTS if status == 302)


async def test_a_state_works_once(client: Any, idp: FakeOidcProvider) -> None:
    back = await _at_provider(await _authorize(client, redirect_to=APP))
    first = await client.get(back, follow_redirects=False)
    assert first.status_code == 302, first.text
    assert first.headers["location"].startswith(APP + "#access_token=")
    idp.reuse_codes = True  # even a lax provider's code cannot buy a second session
    assert _error(await client.get(back, follow_redirects=False)) == (400, "auth.invalid_oauth_state")
    assert len(idp.token_requests) == 1  # refused before the provider is asked


async def test_unknown_expired_or_foreign_states_are_refused(client: Any, app: Litestar, idp: FakeOidcProvider) -> None:
    settings = app.state.runtime.settings
    back = await _at_provider(await _authorize(client))
    code, state = _query(back)["code"], _query(back)["state"]

    unknown = await client.get("/auth/oauth/acme/callback", params={"code": code, "state": "made-up"})
    assert _error(unknown) == (400, "auth.invalid_oauth_state")
    # A state issued for acme, brought to beta's callback, is spent and refused.
    foreign = await client.get("/auth/oauth/beta/callback", params={"code": code, "state": state})
    assert _error(foreign) == (400, "auth.invalid_oauth_state")
    assert _error(await client.get(back)) == (400, "auth.invalid_oauth_state")

    back = await _at_provider(await _authorize(client))
    state = _query(back)["state"]
    assert await execute(settings, "UPDATE apprun_oauth_states SET expires_at = created_at WHERE state = $1", state)
    assert _error(await client.get(back)) == (400, "auth.invalid_oauth_state")
    assert idp.token_requests == []


async def test_the_pkce_verifier_is_sent_and_a_wrong_one_fails_the_login(
    client: Any, app: Litestar, idp: FakeOidcProvider
) -> None:
    settings = app.state.runtime.settings
    back = await _at_provider(await _authorize(client))
    state = _query(back)["state"]
    # As if the code had been stolen by someone holding another verifier.
    tampered = "x" * 64
    assert await execute(
        settings, "UPDATE apprun_oauth_states SET code_verifier = $2 WHERE state = $1", state, tampered
    )
    assert _error(await client.get(back)) == (401, "auth.oauth_exchange_failed")
    [exchange] = idp.token_requests
    assert (exchange.form["code_verifier"], exchange.status, exchange.error) == (tampered, 400, "pkce")
    assert await rows(settings, "SELECT id FROM apprun_users") == []


async def test_a_wrong_client_secret_fails_the_login(client: Any, app: Litestar, idp: FakeOidcProvider) -> None:
    assert _error(await _login(client, "badsecret")) == (401, "auth.oauth_exchange_failed")
    assert [(t.status, t.error) for t in idp.token_requests] == [(401, "invalid_client")]
    assert await rows(app.state.runtime.settings, "SELECT id FROM apprun_users") == []


@pytest.mark.parametrize(
    "misbehave",
    [
        pytest.param(lambda idp: setattr(idp, "nonce_override", "someone-elses-nonce"), id="nonce of another login"),
        pytest.param(lambda idp: setattr(idp, "id_token_key", rsa_key("rsa-1")), id="id_token signed off-JWKS"),
        pytest.param(lambda idp: idp.user.update(sub=None), id="id_token without sub"),
    ],
)
async def test_an_id_token_that_does_not_hold_up_fails_the_login(
    client: Any, app: Litestar, idp: FakeOidcProvider, misbehave: Callable[[FakeOidcProvider], None]
) -> None:
    misbehave(idp)
    r = await _login(client)
    assert _error(r) == (401, "auth.oauth_exchange_failed"), r.text
    assert await rows(app.state.runtime.settings, "SELECT id FROM apprun_users") == []


async def test_a_discovery_document_naming_another_issuer_is_refused(client: Any, idp: FakeOidcProvider) -> None:
    idp.discovery_issuer = "https://evil.example"
    r = await client.get("/auth/oauth/acme/authorize", follow_redirects=False)
    assert _error(r) == (503, "auth.identity_provider_unavailable")
    assert "evil.example" not in r.text


async def test_a_provider_error_or_a_missing_code_is_400(client: Any) -> None:
    state = _query(await _authorize(client))["state"]
    for params in ({"error": "access_denied", "state": state}, {"state": state}, {"code": "abc"}):
        r = await client.get("/auth/oauth/acme/callback", params=params)
        assert _error(r) == (400, "auth.oauth_exchange_failed"), params


async def test_an_unknown_provider_is_404(client: Any) -> None:
    for path in ("/auth/oauth/nope/authorize", "/auth/oauth/nope/callback?code=a&state=b"):
        r = await client.get(path, follow_redirects=False)
        assert _error(r) == (404, "auth.unknown_provider"), path


async def test_starting_logins_shares_the_per_address_auth_budget(settings: Settings) -> None:
    # Anonymous and writing a state row per call: unthrottled, a loop would fill the table.
    limited = settings.model_copy(update={"auth_rate_limit_ip": "3/60"})
    app = create_app(limited, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        for _ in range(3):
            await _authorize(client)
        r = await client.get("/auth/oauth/acme/authorize", follow_redirects=False)
        assert _error(r) == (429, "http.too_many_requests"), r.text
        assert int(r.headers["retry-after"]) > 0
        states = await rows(limited, "SELECT state FROM apprun_oauth_states")
        assert len(states) == 3
