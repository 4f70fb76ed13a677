"""Identities from elsewhere: any OIDC issuer, and Ory Kratos sessions.

**OIDC.** A bearer JWT whose ``iss`` is ``AUTH_OIDC_ISSUER`` is verified
against the issuer's JWKS (``AUTH_OIDC_JWKS_URL``), with asymmetric
algorithms only and the configured audience. The JWKS is cached for
``max_age`` (10 min) so a key the issuer withdraws stops working, and fetched
again early when an unknown ``kid`` shows up (rotation) — at most once per
``refresh_interval`` (30 s), so random kids cannot turn every request into a
fetch. Its claims name the user (``sub``, ``email``), the tenant
(``AUTH_OIDC_TENANT_CLAIM``) and the roles (``AUTH_OIDC_ROLES_CLAIM``).

**Kratos.** A Kratos session — the ``X-Session-Token`` header or the
``ory_kratos_session`` cookie — is checked against Kratos's
``GET /sessions/whoami`` (answers cached for up to 30 s, never past the
session's ``expires_at``). The user is the identity's ``traits.email``
(verified when a verified ``verifiable_addresses`` entry is that address);
the tenant and roles are ``metadata_public.tenant_id`` and
``metadata_public.roles``. Never the traits: Kratos lets every user edit
their own traits through the settings flow, while ``metadata_public`` is
written only through the admin API.

Mapping: the external identity is linked to an apprun user (created on first
sight; an existing user with the same email is linked only when the issuer
says the email is verified, otherwise the request is refused — linking an
unverified address would let anyone claim an account). The tenant named by
the identity must exist; the membership is created or its role updated to
the issuer's first role that exists in the tenant — the issuer is the
authority for these users. An identity that names a tenant but no roles
joins as ``member`` and leaves an existing membership's role as it is
(silence is not a demotion). Mappings are cached per identity for 10 s; a
changed claim (another role, another tenant) is mapped again at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
    #: The role actually held in ``tenant_id`` (not necessarily the one claimed).
    role: str | None = None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _timestamp(value: Any) -> dt.datetime | None:
    """An RFC 3339 time from Kratos as an aware datetime (None when absent or unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


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
        refresh_interval: float = 30.0,
        max_age: float = 600.0,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.email_claim = email_claim
        self.tenant_claim = tenant_claim
        self.roles_claim = roles_claim
        self.leeway = min(leeway, MAX_LEEWAY)
        self.provider = provider or f"oidc:{issuer}"
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last good fetch
        self._lock = asyncio.Lock()

    def claims_issuer(self, token: str) -> str | None:
        """The unverified ``iss`` of a JWT, to route it to the right verifier."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        iss = claims.get("iss")
        return iss if isinstance(iss, str) else None

    def _age(self) -> float | None:
        return None if self._fetched_at is None else time.monotonic() - self._fetched_at

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid:
            return self._keys.get(kid)
        # A token without kid is accepted only when the issuer publishes a single key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        age = self._age()
        key = self._lookup(kid)
        if key is not None and age is not None and age <= self.max_age:
            return key
        async with self._lock:
            age = self._age()  # another request may have fetched while this one waited
            stale = age is None or age > self.max_age
            if stale or (self._lookup(kid) is None and age is not None and age > self.refresh_interval):
                await self._fetch()
        key = self._lookup(kid)
        if key is None:
            raise invalid_token(description="unknown signing key")
        return key

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                reply = await client.get(self.jwks_url)
                reply.raise_for_status()
                data = reply.json()
            entries = data.get("keys") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError("the JWKS has no list of keys")
        except (httpx.HTTPError, ValueError) as exc:
            _log.warning("jwks_fetch_failed", url=self.jwks_url, error=str(exc))
            if self._keys:
                # Availability over freshness while the issuer is down: the keys last
                # seen stay in use, and the next attempt waits a refresh interval.
                self._fetched_at = time.monotonic() - max(self.max_age - self.refresh_interval, 0.0)
                return
            raise ServiceUnavailable("auth.identity_provider_unavailable") from exc
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            # Public signature keys only: a shared secret (kty=oct) is never a verification key here.
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue
            try:
                keys[entry.get("kid") or ""] = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
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
    """Checks Kratos sessions with ``/sessions/whoami`` (cached briefly: a revoked session lives on that long)."""

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
        if not isinstance(session, dict):
            raise ServiceUnavailable("auth.identity_provider_unavailable")
        identity = self._identity(session)
        ttl = self.cache_seconds
        expires = _timestamp(session.get("expires_at"))
        if expires is not None:
            ttl = min(ttl, (expires - utcnow()).total_seconds())
            if ttl <= 0:
                raise invalid_token(description="the Kratos session has expired")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + ttl, identity)
        return identity

    @staticmethod
    def _identity(session: dict[str, Any]) -> ExternalIdentity:
        if session.get("active") is not True:
            raise invalid_token(description="the Kratos session is not active")
        ident = _mapping(session.get("identity"))
        traits = _mapping(ident.get("traits"))
        # Tenant and roles only from metadata_public: a user can rewrite their own traits.
        public = _mapping(ident.get("metadata_public"))
        email = traits.get("email")
        addresses = ident.get("verifiable_addresses")
        verified = isinstance(email, str) and any(
            isinstance(a, dict)
            and a.get("verified") is True
            and isinstance(a.get("value"), str)
            and a["value"].strip().lower() == email.strip().lower()  # Kratos stores addresses lower-cased
            for a in (addresses if isinstance(addresses, list) else [])
        )
        roles = _roles(public.get("roles"))
        tenant = public.get("tenant_id")
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
        # Keyed by who, holding what was last synced: a hit needs the very same claims.
        # (Keyed by the claims alone, viewer -> member -> viewer would find the first
        # mapping still cached and skip re-syncing the membership back to viewer.)
        self._cache: dict[tuple[str, str], tuple[float, ExternalIdentity, MappedIdentity]] = {}

    async def map(self, identity: ExternalIdentity) -> MappedIdentity:
        who = (identity.provider, identity.subject)
        hit = self._cache.get(who)
        if hit is not None and hit[0] > time.monotonic() and hit[1] == identity:
            return hit[2]
        async with self.db.transaction() as conn:
            mapped = await self.map_in(conn, identity)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[who] = (time.monotonic() + self.cache_seconds, identity, mapped)
        return mapped

    async def map_in(self, conn: Connection, identity: ExternalIdentity) -> MappedIdentity:
        if conn.dialect == "postgres":
            # A client's parallel first requests would each insert the same user or
            # membership (unique violation, 500): one identity is mapped at a time.
            # SQLite needs nothing: its write transactions are serialized already.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"apprun.identity:{identity.provider}:{identity.subject}",
            )
        user_id = await self._user(conn, identity)
        row = await conn.fetchrow("SELECT disabled_at, is_platform_admin FROM apprun_users WHERE id = $1", user_id)
        if row is None or row["disabled_at"] is not None:
            raise Unauthorized("auth.user_disabled")
        tenant_id = identity.tenant_id
        if tenant_id is not None:
            if await self.tenancy.tenant_name(conn, tenant_id) is None:
                raise Forbidden("auth.unknown_tenant")
            if identity.roles:
                role = await self._role(conn, tenant_id, identity.roles)
                await self.tenancy.sync_membership(conn, tenant_id, user_id, role)
            elif await self.tenancy.role_of(conn, tenant_id, user_id) is None:
                await self.tenancy.sync_membership(conn, tenant_id, user_id, "member")
        else:
            tenant_id = await self.tenancy.first_tenant_of(conn, user_id)
        held = await self.tenancy.role_of(conn, tenant_id, user_id) if tenant_id else None
        return MappedIdentity(
            user_id=user_id, tenant_id=tenant_id, platform_admin=bool(row["is_platform_admin"]), role=held
        )

    async def _role(self, conn: Connection, tenant_id: str, roles: tuple[str, ...]) -> str:
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
