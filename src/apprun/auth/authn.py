"""Who is calling: every request's credentials resolved into its `RequestContext`.

In order of precedence:

1. ``Authorization: Bearer ak_…`` or ``apikey: ak_…`` — an API key of a tenant.
2. ``Authorization: Bearer <JWT>`` — an external OIDC token when its ``iss``
   is the configured issuer, otherwise apprun's own access token. An own
   token is checked against its session on every request (one query, which
   also reads the user's membership and the tenant), so a logged-out session,
   a disabled or deleted user, a token minted for a tenant the session has
   since left, a member removed from the token's tenant
   (``auth.membership_revoked``) or a deactivated tenant
   (``auth.tenant_disabled``) is refused at once, not at expiry. The roles
   are the membership's current one, never the token's ``roles`` claim.
3. ``X-Session-Token`` or the ``ory_kratos_session`` cookie — a Kratos session,
   when ``KRATOS_PUBLIC_URL`` is set.
4. Nothing: anonymous.

Credentials that are present but invalid are a 401 with
``WWW-Authenticate: Bearer error="invalid_token"``, even on public routes —
as PostgREST does — so a client learns its token is bad instead of silently
being served as anonymous.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
import structlog

from apprun.auth.api_keys import KEY_PREFIX, ApiKeys
from apprun.auth.bridges import IdentityMapper, KratosClient, OidcVerifier
from apprun.auth.tokens import TokenKeys, invalid_token
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database, Row
from apprun.kernel.errors import Unauthorized
from apprun.kernel.times import to_datetime, utcnow
from apprun.rbac.service import PLATFORM_ADMIN, POLICY_VERSION
from apprun.tenancy.queries import MEMBER_ROLE, TENANT_DISABLED_AT, TENANT_POLICY_VERSION, tenant_state

if TYPE_CHECKING:
    from litestar.types import Scope

    from apprun.kernel.fastpath import RequestLayer

__all__ = ["TOKEN_EXP", "Authenticator", "authentication_layer", "refusal", "session_problem"]

#: Key of ``RequestContext.extra``: the access token's ``exp`` (Unix seconds), for `Authenticator.recheck`.
TOKEN_EXP = "token_exp"  # noqa: S105 - a dict key, not a secret

#: The session, its user, its tenant and the user's membership there: one round trip per request,
#: so a removed member, a lowered role or a deactivated tenant takes effect on the next request.
#: Tenancy owns the tenant and membership tables: it writes their part of the query (`tenant_state`).
_SESSION_TENANT = tenant_state("s.tenant_id", "s.user_id")
_SESSION_SQL = (
    "SELECT s.user_id, s.tenant_id, s.revoked_at, s.expires_at, u.disabled_at, u.is_platform_admin, "  # noqa: S608 - constant fragments
    f"{_SESSION_TENANT.columns} FROM apprun_sessions s JOIN apprun_users u ON u.id = s.user_id "
    f"{_SESSION_TENANT.joins} WHERE s.id = $1"
)
#: The user and tenant of an identity from elsewhere (OIDC, Kratos), which has no apprun session.
#: Its membership is the issuer's say-so (the mapper re-syncs it), so it is not checked here.
_EXTERNAL_TENANT = tenant_state("$2")
_EXTERNAL_SQL = (
    f"SELECT u.disabled_at, {_EXTERNAL_TENANT.columns} "  # noqa: S608 - constant fragments
    f"FROM apprun_users u {_EXTERNAL_TENANT.joins} WHERE u.id = $1"
)

#: The request headers that carry credentials.
_CREDENTIAL_HEADERS = frozenset({"authorization", "apikey", "x-session-token", "cookie"})

#: Why a credential that once held no longer does (the code), and the RFC 6750 description.
_REFUSALS = {
    "auth.session_revoked": "the session has ended",
    "auth.membership_revoked": "the user is no longer a member of the token's tenant",
    "auth.tenant_disabled": "the token's tenant is deactivated",
    "auth.token_expired": "the access token has expired",
    "auth.invalid_api_key": "the API key is not valid",
    "auth.user_disabled": "the user is disabled",
}


def refusal(code: str) -> Unauthorized:
    """The 401 (with its ``invalid_token`` challenge) for a code `session_problem` or `recheck` gave."""
    return invalid_token(code, _REFUSALS.get(code, "the access token is not valid"))


def session_problem(row: Row | None, user_id: str, tenant_id: str | None) -> str | None:
    """Why the session row no longer backs a token of ``user_id`` in ``tenant_id`` (None: it does).

    A platform admin may act in any tenant (RBAC and the data API let them),
    so losing the membership of the session's tenant does not end their
    token; a deactivated tenant does, for everyone.
    """
    expires = to_datetime(row["expires_at"]) if row else None
    if (
        row is None
        or row["user_id"] != user_id
        or row["revoked_at"] is not None
        or row["disabled_at"] is not None
        or expires is None
        or expires <= utcnow()
    ):
        return "auth.session_revoked"
    if row["tenant_id"] != tenant_id:
        # Deleted tenant: the session's tenant_id was set NULL with the memberships gone.
        # Otherwise the session switched tenant and this token is stale.
        return "auth.membership_revoked" if row["tenant_id"] is None else "auth.session_revoked"
    return _tenant_problem(row, tenant_id)


def _tenant_problem(row: Row, tenant_id: str | None) -> str | None:
    if tenant_id is None:
        return None
    if row[TENANT_DISABLED_AT] is not None:
        return "auth.tenant_disabled"
    if row[MEMBER_ROLE] is None and not row["is_platform_admin"]:
        return "auth.membership_revoked"
    return None


def _unverified_exp(token: str) -> int | None:
    """The ``exp`` of a JWT whose signature was verified already (for `Authenticator.recheck`)."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return int(exp) if isinstance(exp, int | float) else None


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
                identity = await self.oidc.verify(bearer)
                await self._external(ctx, identity, "oidc", _unverified_exp(bearer))
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
        problem = session_problem(row, claims.sub, claims.tenant_id)
        if problem is not None or row is None:
            raise refusal(problem or "auth.session_revoked")
        ctx.user_id = claims.sub
        ctx.session_id = claims.sid
        ctx.tenant_id = claims.tenant_id
        # The role held now, not the one the token was minted with: a lowered role acts at once.
        ctx.roles = (str(row[MEMBER_ROLE]),) if row[MEMBER_ROLE] is not None else ()
        ctx.auth_method = "jwt"
        ctx.extra[TOKEN_EXP] = claims.exp
        if row[TENANT_POLICY_VERSION] is not None:
            ctx.extra[POLICY_VERSION] = int(row[TENANT_POLICY_VERSION])
        if row["is_platform_admin"]:
            ctx.extra[PLATFORM_ADMIN] = True
        ctx.extra["email"] = claims.email

    async def _api_key(self, ctx: RequestContext, key: str) -> None:
        row = await self.api_keys.lookup(key)
        if row is None:
            raise refusal("auth.invalid_api_key")
        if row[TENANT_DISABLED_AT] is not None:
            raise refusal("auth.tenant_disabled")
        ctx.tenant_id = row["tenant_id"]
        ctx.auth_method = "service" if row["kind"] == "service" else "api_key"
        ctx.roles = (row["role"],) if row["role"] else ()
        ctx.extra["api_key_id"] = row["id"]
        ctx.extra[POLICY_VERSION] = int(row[TENANT_POLICY_VERSION])

    async def _external(self, ctx: RequestContext, identity: Any, method: str, exp: int | None = None) -> None:
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
        if exp is not None:
            ctx.extra[TOKEN_EXP] = exp
        if mapped.tenant_id is not None:
            # The mapping is cached for seconds; a deactivated tenant must refuse at once.
            problem = await self._external_problem(ctx)
            if problem is not None:
                raise refusal(problem)

    # --- re-checking a context that was authenticated earlier -------------
    async def recheck(self, ctx: RequestContext) -> str | None:
        """Does the credential ``ctx`` was built from still hold, now? None if so, else the error code.

        For long-lived connections (event streams, realtime) that authenticated
        once and must not outlive a logout, an expiry, a lost membership or a
        deactivated tenant. It asks the database, never a cache: an own JWT's
        session, user, membership and tenant (and the token's own expiry); an
        API key's revocation, expiry and tenant; an external identity's user
        and tenant (its membership is the issuer's to say; and the OIDC
        token's expiry). Anonymous: None.
        """
        if ctx.auth_method == "anonymous":
            return None
        exp = ctx.extra.get(TOKEN_EXP)
        if isinstance(exp, int) and exp + self.keys.leeway < time.time():
            return "auth.token_expired"
        if ctx.auth_method == "jwt":
            async with self.db.read() as conn:
                row = await conn.fetchrow(_SESSION_SQL, ctx.session_id or "")
            return session_problem(row, ctx.user_id or "", ctx.tenant_id)
        if ctx.auth_method in ("api_key", "service"):
            return await self.api_keys.recheck(str(ctx.extra.get("api_key_id") or ""), ctx.tenant_id)
        return await self._external_problem(ctx)

    async def _external_problem(self, ctx: RequestContext) -> str | None:
        async with self.db.read() as conn:
            row = await conn.fetchrow(_EXTERNAL_SQL, ctx.user_id or "", ctx.tenant_id or "")
        if row is None:
            return "auth.session_revoked"
        if row["disabled_at"] is not None:
            return "auth.user_disabled"
        if ctx.tenant_id is not None and row[TENANT_DISABLED_AT] is not None:
            return "auth.tenant_disabled"
        return None


def authentication_layer(authenticator: Authenticator) -> RequestLayer:
    """The request layer (``kernel/fastpath.py``) that runs the `Authenticator` for every routed request."""

    async def authenticate(scope: Scope, ctx: RequestContext) -> None:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            key = name.decode("latin-1").lower()
            if key in _CREDENTIAL_HEADERS:
                headers[key] = value.decode("latin-1")
        if headers:
            await authenticator.authenticate(ctx, headers)

    return authenticate
