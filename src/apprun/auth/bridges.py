"""Identities from elsewhere: any OIDC issuer, and Ory Kratos sessions.

**OIDC.** A bearer JWT whose ``iss`` is ``AUTH_OIDC_ISSUER`` is verified
against the issuer's JWKS (``AUTH_OIDC_JWKS_URL``, fetched and cached, and
fetched again when an unknown ``kid`` shows up), with asymmetric algorithms
only and the configured audience. Its claims name the user (``sub``,
``email``), the tenant (``AUTH_OIDC_TENANT_CLAIM``) and the roles
(``AUTH_OIDC_ROLES_CLAIM``).

**Kratos.** A Kratos session — the ``X-Session-Token`` header or the
``ory_kratos_session`` cookie — is checked against Kratos's
``GET /sessions/whoami``; the identity's traits ``email``, ``tenant_id`` and
``roles`` (or ``metadata_public.roles``) are mapped the same way.

Mapping: the external identity is linked to an apprun user (created on first
sight; an existing user with the same email is linked only when the issuer
says the email is verified, otherwise the request is refused — linking an
unverified address would let anyone claim an account). The tenant named by
the identity must exist; the membership is created or its role updated to
the issuer's — the issuer is the authority for these users.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from apprun.auth.tokens import MAX_LEEWAY, invalid_token
from apprun.auth.users import insert_user, normalize_email, user_by_email
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow
from apprun.rbac.service import Rbac
from apprun.tenancy.service import Tenancy

__all__ = ["ExternalIdentity", "IdentityMapper", "KratosClient", "MappedIdentity", "OidcVerifier"]

_log = get_logger("apprun.auth.bridges")
_ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    tenant_id: str | None
    roles: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MappedIdentity:
    user_id: str
    tenant_id: str | None
    platform_admin: bool


def _roles(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int))
    return ()


class OidcVerifier:
    """Verifies JWTs from one external OIDC issuer."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str | None,
        email_claim: str,
        tenant_claim: str,
        roles_claim: str,
        leeway: int,
        provider: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.email_claim = email_claim
        self.tenant_claim = tenant_claim
        self.roles_claim = roles_claim
        self.leeway = min(leeway, MAX_LEEWAY)
        self.provider = provider or f"oidc:{issuer}"
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def claims_issuer(self, token: str) -> str | None:
        """The unverified ``iss`` of a JWT, to route it to the right verifier."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        iss = claims.get("iss")
        return iss if isinstance(iss, str) else None

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at > 30:
                await self._fetch()
        key = self._keys.get(kid) if kid else (next(iter(self._keys.values())) if len(self._keys) == 1 else None)
        if key is None:
            raise invalid_token(description="unknown signing key")
        return key

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                reply = await client.get(self.jwks_url)
                reply.raise_for_status()
                data = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            _log.warning("jwks_fetch_failed", url=self.jwks_url, error=str(exc))
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry.get("kid") or ""] = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> ExternalIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid_token() from None
        if header.get("alg") not in _ASYMMETRIC:
            raise invalid_token(description="algorithm not allowed")
        key = await self._key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=_ASYMMETRIC,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("auth.token_expired", "the access token has expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise invalid_token() from None
        return self.identity_from_claims(claims)

    def identity_from_claims(self, claims: dict[str, Any]) -> ExternalIdentity:
        email = claims.get(self.email_claim)
        tenant = claims.get(self.tenant_claim)
        return ExternalIdentity(
            provider=self.provider,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            email_verified=claims.get("email_verified") is True,
            tenant_id=tenant if isinstance(tenant, str) else None,
            roles=_roles(claims.get(self.roles_claim)),
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )


class KratosClient:
    """Checks Kratos sessions with ``/sessions/whoami`` (cached briefly)."""

    def __init__(self, public_url: str, cache_seconds: float = 30.0) -> None:
        self.public_url = public_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ExternalIdentity]] = {}

    async def whoami(self, *, session_token: str | None, cookie: str | None) -> ExternalIdentity:
        credential = session_token or cookie or ""
        key = hashlib.sha256(credential.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        headers = {"Accept": "application/json"}
        if session_token:
            headers["X-Session-Token"] = session_token
        else:
            headers["Cookie"] = f"ory_kratos_session={cookie}"
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                reply = await client.get(f"{self.public_url}/sessions/whoami", headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        if reply.status_code in (401, 403, 404):
            raise invalid_token(description="the Kratos session is not valid")
        if reply.status_code != 200:
            raise ServiceUnavailable("auth.identity_provider_unavailable")
        try:
            session = reply.json()
        except ValueError as exc:
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        identity = self._identity(session)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self.cache_seconds, identity)
        return identity

    @staticmethod
    def _identity(session: dict[str, Any]) -> ExternalIdentity:
        if not session.get("active", False):
            raise invalid_token(description="the Kratos session is not active")
        ident = session.get("identity") or {}
        traits = ident.get("traits") or {}
        public = ident.get("metadata_public") or {}
        email = traits.get("email")
        verified = any(
            a.get("verified") is True and a.get("value") == email for a in ident.get("verifiable_addresses") or []
        )
        roles = _roles(traits.get("roles")) or _roles(public.get("roles"))
        tenant = traits.get("tenant_id") or public.get("tenant_id")
        if not ident.get("id"):
            raise invalid_token(description="the Kratos session has no identity")
        return ExternalIdentity(
            provider="kratos",
            subject=str(ident["id"]),
            email=email if isinstance(email, str) else None,
            email_verified=verified,
            tenant_id=tenant if isinstance(tenant, str) else None,
            roles=roles,
            name=traits.get("name") if isinstance(traits.get("name"), str) else None,
        )


class IdentityMapper:
    """External identity → apprun user, tenant membership and role."""

    def __init__(self, db: Database, tenancy: Tenancy, rbac: Rbac, cache_seconds: float = 10.0) -> None:
        self.db = db
        self.tenancy = tenancy
        self.rbac = rbac
        self.cache_seconds = cache_seconds
        self._cache: dict[ExternalIdentity, tuple[float, MappedIdentity]] = {}

    async def map(self, identity: ExternalIdentity) -> MappedIdentity:
        hit = self._cache.get(identity)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.db.transaction() as conn:
            mapped = await self.map_in(conn, identity)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[identity] = (time.monotonic() + self.cache_seconds, mapped)
        return mapped

    async def map_in(self, conn: Connection, identity: ExternalIdentity) -> MappedIdentity:
        user_id = await self._user(conn, identity)
        row = await conn.fetchrow("SELECT disabled_at, is_platform_admin FROM apprun_users WHERE id = $1", user_id)
        if row is None or row["disabled_at"] is not None:
            raise Unauthorized("auth.user_disabled")
        tenant_id = identity.tenant_id
        if tenant_id is not None:
            if await self.tenancy.tenant_name(conn, tenant_id) is None:
                raise Forbidden("auth.unknown_tenant")
            role = await self._role(conn, tenant_id, identity.roles)
            await self.tenancy.sync_membership(conn, tenant_id, user_id, role)
        else:
            tenant_id = await self.tenancy.first_tenant_of(conn, user_id)
        return MappedIdentity(user_id=user_id, tenant_id=tenant_id, platform_admin=bool(row["is_platform_admin"]))

    async def _role(self, conn: Connection, tenant_id: str, roles: tuple[str, ...]) -> str:
        if not roles:
            return "member"
        for role in roles:
            if await self.rbac.role_exists(conn, tenant_id, role):
                return role
        raise Forbidden("auth.unknown_role", details={"roles": list(roles)})

    async def _user(self, conn: Connection, identity: ExternalIdentity) -> str:
        linked = await conn.fetchval(
            "SELECT user_id FROM apprun_identities WHERE provider = $1 AND subject = $2",
            identity.provider,
            identity.subject,
        )
        if linked is not None:
            return str(linked)
        if not identity.email:
            raise BadRequest("auth.identity_without_email")
        email = normalize_email(identity.email)
        existing = await user_by_email(conn, email)
        if existing is not None:
            if not identity.email_verified:
                raise Unauthorized("auth.identity_conflict")
            user_id = str(existing["id"])
        else:
            user_id = await insert_user(
                conn, email=email, password_hash=None, name=identity.name, verified=identity.email_verified
            )
            if identity.tenant_id is None:
                label = identity.name or email.split("@", 1)[0]
                await self.tenancy.create_tenant(conn, name=f"{label}'s workspace", owner_id=user_id, personal=True)
        await conn.execute(
            "INSERT INTO apprun_identities (id, user_id, provider, subject, email, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            new_id(),
            user_id,
            identity.provider,
            identity.subject,
            email,
            utcnow(),
        )
        return user_id
