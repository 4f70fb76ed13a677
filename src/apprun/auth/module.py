"""Builds the auth module's services from the settings, for app.py to mount."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from litestar.middleware import DefineMiddleware

from apprun.auth.account import Account
from apprun.auth.admin import Admin
from apprun.auth.admin_api import ApiKeysController, AuditController, UsersController
from apprun.auth.api import AuthController, InvitationsController, jwks
from apprun.auth.api_keys import ApiKeys
from apprun.auth.authn import Authenticator, AuthnMiddleware
from apprun.auth.bridges import IdentityMapper, KratosClient, OidcVerifier
from apprun.auth.mailer import MailDelivery
from apprun.auth.oauth import OAuthController, OAuthLogins, OAuthProvider
from apprun.auth.opaque import refresh_key
from apprun.auth.passwords import Passwords
from apprun.auth.service import Auth
from apprun.auth.sessions import Sessions
from apprun.auth.tokens import TokenKeys
from apprun.kernel.config import ConfigError, Settings
from apprun.kernel.ratelimit import DatabaseRateLimiter, Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from apprun.kernel.runtime import Runtime
from apprun.rbac.service import Rbac
from apprun.tenancy.service import Tenancy

__all__ = ["AuthModule", "build_auth"]


@dataclass(eq=False)
class AuthModule:
    auth: Auth
    account: Account
    admin: Admin
    api_keys: ApiKeys
    token_keys: TokenKeys
    authenticator: Authenticator
    mail: MailDelivery
    limiter: RateLimiter
    passwords: Passwords
    oauth: OAuthLogins
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def routes(self) -> list[Any]:
        return [
            AuthController,
            InvitationsController,
            OAuthController,
            ApiKeysController,
            AuditController,
            UsersController,
            jwks,
        ]

    def middleware(self) -> DefineMiddleware:
        return DefineMiddleware(AuthnMiddleware, authenticator=self.authenticator)

    def state(self) -> dict[str, Any]:
        return {
            "auth": self.auth,
            "account": self.account,
            "admin": self.admin,
            "api_keys": self.api_keys,
            "token_keys": self.token_keys,
            "oauth": self.oauth,
        }

    async def start(self, runtime: Runtime) -> None:
        self._tasks.append(asyncio.create_task(self.mail.run_retries(), name="apprun-mail-retries"))

    async def stop(self, runtime: Runtime) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.mail.close()
        await self.api_keys.close()
        await self.limiter.close()
        self.passwords.close()


def _limiter(runtime: Runtime) -> RateLimiter:
    s = runtime.settings
    if s.rate_limiter == "memory":  # explicit only: each worker counts alone
        return MemoryRateLimiter()
    if s.rate_limiter == "database":
        limits = (s.auth_rate_limit_ip, s.auth_rate_limit_account, s.auth_rate_limit_account_global)
        # The sweep must not delete a window that is still running: keep rows as long as the longest limit.
        return DatabaseRateLimiter(runtime.db, retention=max(Limit.parse(text).seconds for text in limits))
    from redis.asyncio import Redis

    client = Redis(host=s.redis_host or "127.0.0.1", port=s.redis_port, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def check_redis() -> str:
        await client.ping()
        return "ok"

    # Optional: without Redis the limits fail open (logged), the service still answers.
    runtime.health.register("redis", check_redis, required=False)
    # Every worker and instance of one deployment counts under the same prefix.
    return RedisRateLimiter(client, prefix=f"{s.redis_prefix}:rl:")


def _oauth_providers(raw: str) -> list[OAuthProvider]:
    try:
        items = json.loads(raw or "[]")
        return [OAuthProvider(**item) for item in items]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"AUTH_OAUTH_PROVIDERS is not a JSON list of providers: {exc}") from exc


def build_auth(runtime: Runtime, tenancy: Tenancy, rbac: Rbac) -> AuthModule:
    s = runtime.settings
    db = runtime.db
    secret = s.jwt_secret_value()
    try:
        token_keys = TokenKeys(
            algorithm=s.auth_jwt_algorithm,
            secret=secret,
            private_key_file=s.auth_jwt_private_key_file,
            issuer=s.auth_jwt_issuer,
            audience=s.auth_jwt_audience,
            ttl=s.auth_access_ttl,
            leeway=s.auth_jwt_leeway,
        )
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    passwords = Passwords(
        memory_kib=s.auth_argon2_memory_kib, time_cost=s.auth_argon2_time_cost, parallelism=s.auth_argon2_parallelism
    )
    sessions = Sessions(
        token_keys, session_ttl=s.auth_session_ttl, grace=s.auth_refresh_reuse_grace, refresh_key=refresh_key(secret)
    )
    mail = MailDelivery(s, db, runtime.translator)
    limiter = _limiter(runtime)
    api_keys = ApiKeys(db, rbac)
    rbac.add_source(api_keys)
    auth = Auth(s, db, passwords=passwords, sessions=sessions, tenancy=tenancy, rbac=rbac, mail=mail, limiter=limiter)
    account = Account(
        s,
        db,
        passwords=passwords,
        policy=auth.policy,
        sessions=sessions,
        mail=mail,
        rbac=rbac,
        lockout=auth.sign_in_limits,
    )
    tenancy.directory = account
    admin = Admin(db, passwords=passwords, policy=auth.policy, sessions=sessions, tenancy=tenancy, rbac=rbac)
    mapper = IdentityMapper(db, tenancy, rbac)
    oidc = None
    if s.auth_oidc_issuer:
        if not s.auth_oidc_jwks_url:
            raise ConfigError("AUTH_OIDC_ISSUER needs AUTH_OIDC_JWKS_URL (the issuer's JWKS endpoint)")
        oidc = OidcVerifier(
            issuer=s.auth_oidc_issuer,
            jwks_url=s.auth_oidc_jwks_url,
            audience=s.auth_oidc_audience,
            email_claim=s.auth_oidc_email_claim,
            tenant_claim=s.auth_oidc_tenant_claim,
            roles_claim=s.auth_oidc_roles_claim,
            leeway=s.auth_jwt_leeway,
        )
    kratos = KratosClient(s.kratos_public_url) if s.kratos_public_url else None
    authenticator = Authenticator(db, token_keys, api_keys, oidc=oidc, kratos=kratos, mapper=mapper)
    oauth = OAuthLogins(s, db, providers=_oauth_providers(s.auth_oauth_providers), auth=auth, mapper=mapper)
    return AuthModule(
        auth=auth,
        account=account,
        admin=admin,
        api_keys=api_keys,
        token_keys=token_keys,
        authenticator=authenticator,
        mail=mail,
        limiter=limiter,
        passwords=passwords,
        oauth=oauth,
    )


async def create_platform_admin(settings: Settings, email: str, password: str) -> tuple[str, bool]:
    """For ``apprun admin create``: the same services as the server, for one call."""
    runtime = Runtime(settings)
    await runtime.db.open()
    rbac = Rbac(runtime.db)
    tenancy = Tenancy(runtime.db, rbac)
    module = build_auth(runtime, tenancy, rbac)
    try:
        return await module.admin.create_platform_admin(email, password)
    finally:
        await module.stop(runtime)
        await runtime.db.close()
