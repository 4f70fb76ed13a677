"""Identity providers on loopback, standing in for the real ones in tests.

Both speak the real wire contracts over real HTTP (``http.server`` in a
daemon thread on a free 127.0.0.1 port), so apprun's bridges are exercised
end to end — nothing of apprun is mocked:

- `FakeOidcProvider`: an OIDC issuer. It publishes a JWKS
  (``/jwks.json``) and discovery (``/.well-known/openid-configuration``),
  mints JWTs with its keys for the tests, and runs the OAuth2
  authorization-code flow with PKCE: ``/authorize`` answers at once with a
  redirect carrying a code for a fixed user, ``/token`` checks the client's
  credentials, the redirect URI and the PKCE ``code_verifier`` against the
  stored S256 ``code_challenge`` before it hands out an ID token with the
  nonce.
- `FakeKratos`: Ory Kratos's public ``GET /sessions/whoami`` — a Session
  object for a known ``X-Session-Token`` or ``ory_kratos_session`` cookie,
  401 otherwise (field names as in ory-kratos-client's ``Session`` and
  ``Identity`` models).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from apprun.testing.engines import free_port

__all__ = [
    "FakeKratos",
    "FakeOidcProvider",
    "SigningKey",
    "TokenRequest",
    "ed25519_key",
    "kratos_session",
    "rsa_key",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = jwt.algorithms.OKPAlgorithm if self.alg == "EdDSA" else jwt.algorithms.RSAAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(public))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})})


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ed25519_key(kid: str) -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


class _LoopbackServer:
    """A threaded HTTP server on a free loopback port; a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._dispatch(self, "GET")

            def do_POST(self) -> None:
                owner._dispatch(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        body = b""
        if method == "POST":
            body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        status, headers, payload = self.handle(method, split.path, query, dict(handler.headers.items()), body)
        data = json.dumps(payload).encode() if payload is not None else b""
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if payload is not None:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# --- OIDC -----------------------------------------------------------------


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str


@dataclass(frozen=True)
class TokenRequest:
    """What the token endpoint received, and what it answered."""

    form: dict[str, str]
    client_auth: str  # "basic", "post" or "none"
    status: int
    error: str | None


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class FakeOidcProvider(_LoopbackServer):
    """An OIDC issuer and OAuth2 authorization server for one client."""

    def __init__(
        self,
        *,
        keys: list[SigningKey] | None = None,
        client_id: str = "apprun-web",
        client_secret: str | None = "s3cret+client/secret==",  # noqa: S107 - a test double's own secret
        redirect_uris: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.keys = keys if keys is not None else [rsa_key("rsa-1")]
        self.client_id = client_id
        self.client_secret = client_secret
        #: The registered redirect URIs; empty accepts any (bridge tests need no OAuth).
        self.redirect_uris = redirect_uris
        #: Claims of the user who "logs in" at /authorize.
        self.user: dict[str, Any] = {
            "sub": "social-user-1",
            "email": "social.user@example.com",
            "email_verified": True,
            "name": "Social User",
        }
        #: Misbehaviour switches for refusal tests.
        self.reuse_codes = False
        self.nonce_override: str | None = None
        self.id_token_key: SigningKey | None = None
        self.discovery_issuer: str | None = None
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[TokenRequest] = []
        self.jwks_fetches = 0
        self._grants: dict[str, _Grant] = {}

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def mint(
        self,
        key: SigningKey | None = None,
        *,
        headers: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A JWT from this issuer: iss, iat and exp (5 min) filled in, ``claims`` win, ``drop`` removed."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "iat": now, "exp": now + 300, **claims}
        for name in drop:
            body.pop(name, None)
        return (key or self.keys[0]).sign(body, headers)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path == "/.well-known/openid-configuration":
            return 200, {}, self._discovery()
        if method == "GET" and path == "/jwks.json":
            with self.lock:
                self.jwks_fetches += 1
            return 200, {}, self.jwks()
        if method == "GET" and path == "/authorize":
            return self._authorize(query)
        if method == "POST" and path == "/token":
            return self._token(headers, body)
        return 404, {}, {"error": "not_found"}

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.discovery_issuer or self.issuer,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.authorize_requests.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or (self.redirect_uris and redirect_uri not in self.redirect_uris):
            # Never redirect to an unregistered address (RFC 6749 §4.1.2.1).
            return 400, {}, {"error": "invalid_request", "error_description": "unknown client or redirect_uri"}
        back: dict[str, str] = {"state": query.get("state", "")}
        if query.get("response_type") != "code":
            back["error"] = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            back["error"] = "invalid_request"  # this provider insists on PKCE with S256
        else:
            code = secrets.token_urlsafe(24)
            grant = _Grant(
                self.client_id, redirect_uri, query["code_challenge"], query.get("nonce"), query.get("scope", "")
            )
            with self.lock:
                self._grants[code] = grant
            back["code"] = code
        return 302, {"Location": f"{redirect_uri}?{urlencode(back)}"}, None

    def _client_auth(self, headers: dict[str, str], form: dict[str, str]) -> tuple[str, str | None, str | None]:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            return "basic", unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
        if "client_secret" in form:
            return "post", form.get("client_id"), form["client_secret"]
        return "none", form.get("client_id"), None

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        method, client_id, secret = self._client_auth(headers, form)
        status, error, reply = self._exchange(form, client_id, secret)
        with self.lock:
            self.token_requests.append(TokenRequest(form, method, status, error))
        return status, {"Cache-Control": "no-store"}, reply

    def _exchange(
        self, form: dict[str, str], client_id: str | None, secret: str | None
    ) -> tuple[int, str | None, dict[str, Any]]:
        if client_id != self.client_id or (self.client_secret is not None and secret != self.client_secret):
            return 401, "invalid_client", {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, "unsupported_grant_type", {"error": "unsupported_grant_type"}
        with self.lock:
            code = form.get("code", "")
            grant = self._grants.get(code) if self.reuse_codes else self._grants.pop(code, None)
        if grant is None:
            return 400, "invalid_grant", {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, "invalid_grant", {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        verifier = form.get("code_verifier")
        if not verifier or _s256(verifier) != grant.code_challenge:
            return 400, "pkce", {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        claims = {**self.user, "aud": self.client_id, "azp": self.client_id}
        nonce = self.nonce_override if self.nonce_override is not None else grant.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = self.mint(self.id_token_key, **claims)
        return 200, None, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": id_token}


# --- Kratos ---------------------------------------------------------------


def kratos_session(
    *,
    email: str,
    verified: bool = True,
    active: bool = True,
    traits: dict[str, Any] | None = None,
    metadata_public: dict[str, Any] | None = None,
    expires_in: float = 3600,
    address: str | None = None,
) -> dict[str, Any]:
    """A Kratos ``Session`` as ``/sessions/whoami`` returns it."""
    now = dt.datetime.now(dt.UTC)
    n = next(_ids)

    def rfc3339nano(t: dt.datetime) -> str:  # as Go formats it: nanoseconds, Z
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "active": active,
        "authenticated_at": rfc3339nano(now),
        "issued_at": rfc3339nano(now),
        "expires_at": rfc3339nano(now + dt.timedelta(seconds=expires_in)),
        "authenticator_assurance_level": "aal1",
        "identity": {
            "id": f"11111111-0000-4000-8000-{n:012d}",
            "schema_id": "default",
            "schema_url": "http://kratos.invalid/schemas/default",
            "state": "active",
            "traits": {"email": email, **(traits or {})},
            "verifiable_addresses": [
                {
                    "id": f"22222222-0000-4000-8000-{n:012d}",
                    "value": address if address is not None else email,
                    "verified": verified,
                    "via": "email",
                    "status": "completed" if verified else "pending",
                }
            ],
            "metadata_public": metadata_public,
        },
    }


@dataclass
class _WhoamiCall:
    session_token: str | None
    cookie: str | None


class FakeKratos(_LoopbackServer):
    """Kratos's public API, ``GET /sessions/whoami`` only."""

    def __init__(self) -> None:
        super().__init__()
        #: Sessions by the value of the X-Session-Token header.
        self.tokens: dict[str, dict[str, Any]] = {}
        #: Sessions by the value of the ory_kratos_session cookie.
        self.cookies: dict[str, dict[str, Any]] = {}
        self.calls: list[_WhoamiCall] = []
        #: When set, every whoami answers this status (an ailing Kratos).
        self.fail_with: int | None = None

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, str],  # noqa: ARG002 - the fake server's handler signature
        headers: dict[str, str],
        body: bytes,  # noqa: ARG002 - the fake server's handler signature
    ) -> tuple[int, dict[str, str], Any]:
        if method != "GET" or path != "/sessions/whoami":
            return 404, {}, {"error": {"code": 404, "status": "Not Found"}}
        token = headers.get("X-Session-Token")
        jar: SimpleCookie = SimpleCookie()
        jar.load(headers.get("Cookie", ""))
        cookie = jar["ory_kratos_session"].value if "ory_kratos_session" in jar else None
        with self.lock:
            self.calls.append(_WhoamiCall(token, cookie))
        if self.fail_with is not None:
            return self.fail_with, {}, {"error": {"code": self.fail_with, "status": "Internal Server Error"}}
        session = self.tokens.get(token or "") or self.cookies.get(cookie or "")
        if session is None:
            return 401, {}, {"error": {"code": 401, "status": "Unauthorized", "reason": "No valid session"}}
        return 200, {}, session
