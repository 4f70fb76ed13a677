"""Security checklist 1-4: what an access token must survive (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from tests.support.accounts import bearer, register

CHALLENGE = 'Bearer error="invalid_token"'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand, so any header or claim can be malformed."""
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    sig = _b64(hmac.new(key, signing_input, hashlib.sha256).digest()) if key is not None else ""
    return f"{head}.{body}.{sig}"


def _secret(app: Any) -> bytes:
    return str(app.state.runtime.settings.jwt_secret_value()).encode()


async def _claims(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    tokens = await register(client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return tokens, claims


async def test_a_valid_token_works(client: Any) -> None:
    tokens, claims = await _claims(client)
    r = await client.get("/auth/me", headers=bearer(tokens))
    assert r.status_code == 200
    assert r.json()["id"] == claims["sub"]
    for key in ("sub", "tenant_id", "roles", "sid", "iat", "exp", "iss", "aud"):
        assert key in claims
    assert claims["exp"] - claims["iat"] == 900
    assert claims["roles"] == ["owner"]


def _tampered(claims: dict[str, Any], secret: bytes) -> dict[str, str]:
    now = int(time.time())
    hs = {"alg": "HS256", "typ": "JWT"}
    good = dict(claims)
    return {
        "alg none": _forge({"alg": "none", "typ": "JWT"}, good, None),
        "alg none with a signature": _forge({"alg": "none"}, good, secret),
        "alg HS512": jwt.encode(good, secret, algorithm="HS512"),
        "wrong key": _forge(hs, good, b"another secret that is long enough!!"),
        "expired": _forge(hs, {**good, "iat": now - 3600, "exp": now - 1800}, secret),
        "exp not a number": _forge(hs, {**good, "exp": "tomorrow"}, secret),
        "iat not a number": _forge(hs, {**good, "iat": "yesterday"}, secret),
        "nbf not a number": _forge(hs, {**good, "nbf": "soon"}, secret),
        "nbf in the future": _forge(hs, {**good, "nbf": now + 3600}, secret),
        "wrong audience": _forge(hs, {**good, "aud": "someone-else"}, secret),
        "wrong issuer": _forge(hs, {**good, "iss": "evil"}, secret),
        "no sid": _forge(hs, {k: v for k, v in good.items() if k != "sid"}, secret),
        "no exp": _forge(hs, {k: v for k, v in good.items() if k != "exp"}, secret),
        "roles not a list": _forge(hs, {**good, "roles": "owner"}, secret),
        "empty": "",
        "two segments": "a.b",
        "garbage": "not-a-jwt-at-all",
        "four segments": "a.b.c.d",
        "bad base64": "@@@.###.$$$",
    }


TAMPER_CASES = [
    "alg none",
    "alg none with a signature",
    "alg HS512",
    "wrong key",
    "expired",
    "exp not a number",
    "iat not a number",
    "nbf not a number",
    "nbf in the future",
    "wrong audience",
    "wrong issuer",
    "no sid",
    "no exp",
    "roles not a list",
    "empty",
    "two segments",
    "garbage",
    "four segments",
    "bad base64",
]


@pytest.mark.parametrize("case", TAMPER_CASES)
@pytest.mark.checklist(1, 2, 3)
async def test_bad_tokens_are_401_with_the_bearer_challenge(client: Any, app: Any, case: str) -> None:
    _, claims = await _claims(client)
    token = _tampered(claims, _secret(app))[case]
    r = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith(CHALLENGE)
    assert r.json()["code"] in ("auth.invalid_token", "auth.token_expired")


@pytest.mark.checklist(3)
async def test_bad_token_on_a_public_route_is_still_401(client: Any) -> None:
    r = await client.get("/api/v1/system/info", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401
    r = await client.get("/api/v1/system/info", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


@pytest.mark.checklist(4)
async def test_logged_out_session_is_401(client: Any) -> None:
    tokens = await register(client)
    assert (await client.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    r = await client.get("/auth/me", headers=bearer(tokens))
    assert r.status_code == 401
    assert r.json()["code"] == "auth.session_revoked"
    assert r.headers["www-authenticate"].startswith(CHALLENGE)


@pytest.mark.checklist(4)
async def test_deleted_user_is_401(client: Any, db: Any) -> None:
    tokens = await register(client)
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM apprun_users WHERE id = $1", tokens["user"]["id"])
    r = await client.get("/auth/me", headers=bearer(tokens))
    assert r.status_code == 401


@pytest.mark.checklist(4)
async def test_disabled_user_is_401(client: Any, db: Any) -> None:
    tokens = await register(client)
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET disabled_at = updated_at WHERE id = $1", tokens["user"]["id"])
    assert (await client.get("/auth/me", headers=bearer(tokens))).status_code == 401


@pytest.mark.checklist(4)
async def test_global_logout_ends_every_session(client: Any) -> None:
    first = await register(client)
    email = first["user"]["email"]
    second = (
        await client.post("/auth/login", json={"email": email, "password": "correct horse battery staple"})
    ).json()
    assert (await client.post("/auth/logout?scope=global", headers=bearer(second))).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(first))).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(second))).status_code == 401
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401


def _pem_pair(kind: str, tmp_path: Path) -> Path:
    key: Any = ed25519.Ed25519PrivateKey.generate() if kind == "EdDSA" else rsa.generate_private_key(65537, 2048)
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
async def test_asymmetric_tokens_and_jwks(
    make_settings: Any, database_url: str, tmp_path: Path, algorithm: str
) -> None:
    settings = make_settings(
        database_url=database_url,
        auth_jwt_algorithm=algorithm,
        auth_jwt_private_key_file=_pem_pair(algorithm, tmp_path),
    )
    app = create_app(settings, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        tokens = await register(c)
        jwks = (await c.get("/.well-known/jwks.json")).json()
        assert len(jwks["keys"]) == 1
        key = jwks["keys"][0]
        assert key["alg"] == algorithm
        assert jwt.get_unverified_header(tokens["access_token"])["kid"] == key["kid"]
        # A third party verifies with the published key alone.
        public = jwt.PyJWK.from_dict(key)
        claims = jwt.decode(tokens["access_token"], public, algorithms=[algorithm], audience="apprun")
        assert claims["sub"] == tokens["user"]["id"]
        assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 200
        # HS256 signed with the public key (the classic confusion) is refused.
        pem = (
            serialization.load_pem_private_key(settings.auth_jwt_private_key_file.read_bytes(), password=None)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        confused = _forge({"alg": "HS256", "typ": "JWT", "kid": key["kid"]}, claims, pem)
        r = await c.get("/auth/me", headers={"Authorization": f"Bearer {confused}"})
        assert r.status_code == 401
        # So is an HS256 token signed with JWT_SECRET: only the configured algorithm counts.
        hs = _forge({"alg": "HS256", "typ": "JWT"}, claims, _secret(app))
        assert (await c.get("/auth/me", headers={"Authorization": f"Bearer {hs}"})).status_code == 401


async def test_hs256_publishes_no_keys(client: Any) -> None:
    assert (await client.get("/.well-known/jwks.json")).json() == {"keys": []}


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from apprun.auth import tokens as tokens_module
    from apprun.auth.tokens import TokenKeys
    from apprun.kernel.errors import Unauthorized

    keys = TokenKeys(
        algorithm="HS256", secret="s" * 48, private_key_file=None, issuer="apprun", audience="apprun", ttl=60, leeway=0
    )
    token, _ = keys.issue(user_id="u1", session_id="s1", tenant_id="t1", roles=["member"], email="a@example.com")
    first = keys.verify(token)
    decoded = 0
    original = keys._decode

    def counting(text: str) -> Any:
        nonlocal decoded
        decoded += 1
        return original(text)

    monkeypatch.setattr(keys, "_decode", counting)
    assert keys.verify(token) == first  # from memory: not decoded again
    assert decoded == 0
    # A tampered token is not the same text: it is decoded, and refused.
    with pytest.raises(Unauthorized) as refused:
        keys.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    assert refused.value.code == "auth.invalid_token"
    assert decoded == 1
    # Past its expiry the remembered token is refused like any other.
    monkeypatch.setattr(tokens_module.time, "time", lambda: first.exp + 1)
    with pytest.raises(Unauthorized) as expired:
        keys.verify(token)
    assert expired.value.code == "auth.token_expired"
