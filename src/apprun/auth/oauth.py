"""Social login: the OAuth2 authorization-code flow with PKCE, for OIDC providers.

Providers are configured in ``AUTH_OAUTH_PROVIDERS`` as a JSON list::

    [{"name": "acme", "issuer": "https://id.acme.example",
      "client_id": "…", "client_secret": "…", "scopes": "openid email profile"}]

``GET /auth/oauth/<name>/authorize?redirect_to=<url>`` stores a state, a
PKCE verifier and a nonce, and redirects the browser to the provider. The
provider sends it back to ``/auth/oauth/<name>/callback``, where apprun
exchanges the code (with the verifier), verifies the ID token against the
provider's JWKS (issuer, audience = client id, nonce), links the identity to
a user as the OIDC bridge does, and opens a session. The tokens go to
``redirect_to`` in the URL fragment (``#access_token=…&refresh_token=…``,
as Supabase does) — only to addresses under ``AUTH_SITE_URL`` or
``AUTH_REDIRECT_ALLOWLIST`` — or, without ``redirect_to``, as JSON.

The provider's discovery document must name the configured issuer (OIDC
Discovery §4.3, against mix-ups); a state is single-use and consumed
atomically, so two callbacks racing with one state cannot both sign in. The
client authenticates with ``client_secret_basic``, its id and secret
form-urlencoded first as RFC 6749 §2.3.1 requires (secrets often hold ``+``
or ``/``).

authlib supplies the protocol pieces (PKCE challenge, grant URI, token
generation); the token request itself goes through httpx. The two endpoints
are in ``oauth_api.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from apprun.auth.bridges import IdentityMapper, OidcVerifier
from apprun.auth.service import Auth, Client
from apprun.auth.settings import AuthSettings
from apprun.kernel.db import Database
from apprun.kernel.errors import BadRequest, NotFound, ServiceUnavailable, Unauthorized
from apprun.kernel.logging import get_logger
from apprun.kernel.times import to_datetime, utcnow

__all__ = ["OAuthLogins", "OAuthProvider"]

STATE_TTL = 600
_log = get_logger("apprun.auth.oauth")


@dataclass(frozen=True)
class OAuthProvider:
    name: str
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: str = "openid email profile"


@dataclass
class _Discovered:
    authorization_endpoint: str
    token_endpoint: str
    verifier: OidcVerifier
    fetched: float


class OAuthLogins:
    def __init__(
        self,
        settings: AuthSettings,
        db: Database,
        *,
        providers: list[OAuthProvider],
        auth: Auth,
        mapper: IdentityMapper,
    ) -> None:
        self.settings = settings
        self.db = db
        self.providers = {p.name: p for p in providers}
        self.auth = auth
        self.mapper = mapper
        self._discovered: dict[str, _Discovered] = {}

    def _provider(self, name: str) -> OAuthProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound("auth.unknown_provider", params={"name": name})
        return provider

    def _callback_url(self, name: str) -> str:
        # apprun's own address, not the application's: the provider calls apprun back.
        return f"{self.settings.http_public_url.rstrip('/')}/auth/oauth/{name}/callback"

    def check_redirect(self, redirect_to: str | None) -> None:
        if redirect_to is None:
            return
        allowed = [self.settings.auth_site_url.rstrip("/"), *self.settings.auth_redirect_allowlist]
        if not any(redirect_to == a or redirect_to.startswith(a.rstrip("/") + "/") for a in allowed):
            raise BadRequest("auth.redirect_not_allowed")

    async def _discover(self, provider: OAuthProvider) -> _Discovered:
        found = self._discovered.get(provider.name)
        if found is not None and time.monotonic() - found.fetched < 3600:
            return found
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                reply = await client.get(url)
                reply.raise_for_status()
                meta = reply.json()
            if not isinstance(meta, dict):
                raise ValueError("the discovery document is not a JSON object")
            missing = [
                k
                for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                if not isinstance(meta.get(k), str)
            ]
            if missing:
                raise ValueError(f"the discovery document lacks {', '.join(missing)}")
            # Only a trailing slash may differ: a document naming another issuer is a mix-up.
            if meta["issuer"].rstrip("/") != provider.issuer.rstrip("/"):
                raise ValueError(f"the discovery document names the issuer {meta['issuer']!r}")
        except (httpx.HTTPError, ValueError) as exc:
            _log.warning("oauth_discovery_failed", provider=provider.name, url=url, error=str(exc))
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        verifier = OidcVerifier(
            issuer=meta["issuer"],
            jwks_url=meta["jwks_uri"],
            audience=provider.client_id,
            email_claim="email",
            tenant_claim=self.settings.auth_oidc_tenant_claim,
            roles_claim=self.settings.auth_oidc_roles_claim,
            leeway=self.settings.auth_jwt_leeway,
            provider=f"oauth:{provider.name}",
        )
        found = _Discovered(meta["authorization_endpoint"], meta["token_endpoint"], verifier, time.monotonic())
        self._discovered[provider.name] = found
        return found

    async def authorize_url(self, name: str, redirect_to: str | None) -> str:
        # authlib (~4 MB) loads on the first sign-in through a provider, not in every worker.
        from authlib.common.security import generate_token
        from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        provider = self._provider(name)
        self.check_redirect(redirect_to)
        meta = await self._discover(provider)
        state, verifier, nonce = generate_token(32), generate_token(64), generate_token(32)
        now = utcnow()
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM apprun_oauth_states WHERE expires_at < $1", now)
            await conn.execute(
                "INSERT INTO apprun_oauth_states (state, provider, code_verifier, nonce, redirect_to, created_at, "
                "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                state,
                name,
                verifier,
                nonce,
                redirect_to,
                now,
                now + dt.timedelta(seconds=STATE_TTL),
            )
        return str(
            prepare_grant_uri(
                meta.authorization_endpoint,
                client_id=provider.client_id,
                response_type="code",
                redirect_uri=self._callback_url(name),
                scope=provider.scopes,
                state=state,
                nonce=nonce,
                code_challenge=create_s256_code_challenge(verifier),
                code_challenge_method="S256",
            )
        )

    async def complete(self, name: str, code: str, state: str, client: Client) -> tuple[dict[str, Any], str | None]:
        provider = self._provider(name)
        async with self.db.transaction() as conn:
            # One statement takes the state: of two callbacks racing with it, one gets the row.
            row = await conn.fetchrow(
                "DELETE FROM apprun_oauth_states WHERE state = $1 "
                "RETURNING provider, code_verifier, nonce, redirect_to, expires_at",
                state,
            )
        expires = to_datetime(row["expires_at"]) if row else None
        if row is None or row["provider"] != name or expires is None or expires <= utcnow():
            raise BadRequest("auth.invalid_oauth_state")
        meta = await self._discover(provider)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._callback_url(name),
            "client_id": provider.client_id,
            "code_verifier": row["code_verifier"],
        }
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                if provider.client_secret:  # client_secret_basic, both parts form-urlencoded (RFC 6749 §2.3.1)
                    basic = (quote(provider.client_id, safe=""), quote(provider.client_secret, safe=""))
                    reply = await http.post(meta.token_endpoint, data=form, auth=basic)
                else:  # a public client: PKCE alone
                    reply = await http.post(meta.token_endpoint, data=form)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        if reply.status_code != 200:
            raise Unauthorized("auth.oauth_exchange_failed", details={"status": reply.status_code})
        try:
            body = reply.json()
        except ValueError:
            body = None
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(id_token, str):
            raise Unauthorized("auth.oauth_exchange_failed", details={"reason": "no id_token"})
        try:
            identity = await meta.verifier.verify(id_token)
        except Unauthorized:
            # Not the caller's bearer token that failed: the provider's answer did.
            raise Unauthorized("auth.oauth_exchange_failed", details={"reason": "id_token"}) from None
        claims = jwt.decode(id_token, options={"verify_signature": False})  # verified just above
        if claims.get("nonce") != row["nonce"]:
            raise Unauthorized("auth.oauth_exchange_failed", details={"reason": "nonce"})
        async with self.db.transaction() as conn:
            mapped = await self.mapper.map_in(conn, identity)
            email = await conn.fetchval("SELECT email FROM apprun_users WHERE id = $1", mapped.user_id)
            pair = await self.auth.sign_in_user(
                conn, mapped.user_id, str(email), mapped.tenant_id, method=f"oauth:{name}"[:20], client=client
            )
        return pair.to_dict(self.auth.access_ttl), row["redirect_to"]
