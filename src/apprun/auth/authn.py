"""Who is calling: every request's credentials resolved into its `RequestContext`.

In order of precedence:

1. ``Authorization: Bearer ak_…`` or ``apikey: ak_…`` — an API key of a tenant.
2. ``Authorization: Bearer <JWT>`` — an external OIDC token when its ``iss``
   is the configured issuer, otherwise apprun's own access token. An own
   token is checked against its session on every request, so a logged-out
   session, a disabled or deleted user, or a token minted for a tenant the
   session has since left is refused at once (not at expiry).
3. ``X-Session-Token`` or the ``ory_kratos_session`` cookie — a Kratos session,
   when ``KRATOS_PUBLIC_URL`` is set.
4. Nothing: anonymous.

Credentials that are present but invalid are a 401 with
``WWW-Authenticate: Bearer error="invalid_token"``, even on public routes —
as PostgREST does — so a client learns its token is bad instead of silently
being served as anonymous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from apprun.auth.api_keys import KEY_PREFIX, ApiKeys
from apprun.auth.bridges import IdentityMapper, KratosClient, OidcVerifier
from apprun.auth.tokens import TokenKeys, invalid_token
from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.db import Database
from apprun.kernel.times import to_datetime, utcnow
from apprun.rbac.service import PLATFORM_ADMIN, POLICY_VERSION

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["Authenticator", "AuthnMiddleware"]

_SESSION_SQL = (
    "SELECT s.user_id, s.tenant_id, s.revoked_at, s.expires_at, u.disabled_at, u.is_platform_admin, "
    "t.policy_version FROM apprun_sessions s JOIN apprun_users u ON u.id = s.user_id "
    "LEFT JOIN apprun_tenants t ON t.id = s.tenant_id WHERE s.id = $1"
)


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


class Authenticator:
    def __init__(
        self,
        db: Database,
        keys: TokenKeys,
        api_keys: ApiKeys,
        *,
        oidc: OidcVerifier | None = None,
        kratos: KratosClient | None = None,
        mapper: IdentityMapper | None = None,
    ) -> None:
        self.db = db
        self.keys = keys
        self.api_keys = api_keys
        self.oidc = oidc
        self.kratos = kratos
        self.mapper = mapper

    async def authenticate(self, ctx: RequestContext, headers: dict[str, str]) -> None:
        """Fill ``ctx`` from the request's credentials (or leave it anonymous)."""
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        bearer = credential.strip() if scheme.lower() == "bearer" else None
        if authorization and not bearer:
            raise invalid_token(description="expected `Authorization: Bearer <token>`")
        apikey = headers.get("apikey")
        if (bearer and bearer.startswith(KEY_PREFIX)) or (not bearer and apikey and apikey.startswith(KEY_PREFIX)):
            await self._api_key(ctx, bearer or apikey or "")
        elif bearer:
            if self.oidc is not None and self.oidc.claims_issuer(bearer) == self.oidc.issuer:
                await self._external(ctx, await self.oidc.verify(bearer), "oidc")
            else:
                await self._own_token(ctx, bearer)
        elif self.kratos is not None:
            session_token = headers.get("x-session-token")
            cookie = _cookie(headers.get("cookie"), "ory_kratos_session")
            if session_token or cookie:
                await self._external(
                    ctx, await self.kratos.whoami(session_token=session_token, cookie=cookie), "kratos"
                )
        if ctx.user_id or ctx.tenant_id:
            structlog.contextvars.bind_contextvars(user_id=ctx.user_id, tenant_id=ctx.tenant_id)

    async def _own_token(self, ctx: RequestContext, token: str) -> None:
        claims = self.keys.verify(token)
        async with self.db.read() as conn:
            row = await conn.fetchrow(_SESSION_SQL, claims.sid)
        expires = to_datetime(row["expires_at"]) if row else None
        if (
            row is None
            or row["user_id"] != claims.sub
            or row["revoked_at"] is not None
            or row["disabled_at"] is not None
            or expires is None
            or expires <= utcnow()
        ):
            raise invalid_token("auth.session_revoked", "the session has ended")
        if row["tenant_id"] != claims.tenant_id:
            # The session switched tenant (or the tenant is gone): this token is stale.
            raise invalid_token("auth.session_revoked", "the token's tenant is no longer the session's")
        ctx.user_id = claims.sub
        ctx.session_id = claims.sid
        ctx.tenant_id = claims.tenant_id
        ctx.roles = claims.roles
        ctx.auth_method = "jwt"
        if row["policy_version"] is not None:
            ctx.extra[POLICY_VERSION] = int(row["policy_version"])
        if row["is_platform_admin"]:
            ctx.extra[PLATFORM_ADMIN] = True
        ctx.extra["email"] = claims.email

    async def _api_key(self, ctx: RequestContext, key: str) -> None:
        row = await self.api_keys.lookup(key)
        if row is None:
            raise invalid_token("auth.invalid_api_key", "the API key is not valid")
        ctx.tenant_id = row["tenant_id"]
        ctx.auth_method = "service" if row["kind"] == "service" else "api_key"
        ctx.roles = (row["role"],) if row["role"] else ()
        ctx.extra["api_key_id"] = row["id"]
        ctx.extra[POLICY_VERSION] = int(row["policy_version"])

    async def _external(self, ctx: RequestContext, identity: Any, method: str) -> None:
        if self.mapper is None:  # pragma: no cover - wiring error
            raise invalid_token()
        mapped = await self.mapper.map(identity)
        ctx.user_id = mapped.user_id
        ctx.tenant_id = mapped.tenant_id
        ctx.roles = (mapped.role,) if mapped.role else ()
        ctx.auth_method = method  # type: ignore[assignment]
        if mapped.platform_admin:
            ctx.extra[PLATFORM_ADMIN] = True
        ctx.extra["email"] = identity.email


class AuthnMiddleware:
    """Runs the `Authenticator` for every routed HTTP and WebSocket request."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = from_scope(scope)
        if ctx is not None:
            headers: dict[str, str] = {}
            for name, value in scope.get("headers", ()):
                key = name.decode("latin-1").lower()
                if key in ("authorization", "apikey", "x-session-token", "cookie"):
                    headers[key] = value.decode("latin-1")
            if headers:
                await self.authenticator.authenticate(ctx, headers)
        await self.app(scope, receive, send)
