"""The auth module, as the kernel sees it: users, sessions, tokens, API keys, bridges, mail.

It fills three ports of the modules below it (in `wire`): API keys grant
roles (an rbac source), tenancy lists and invites users through auth's
`Account` (its `Directory`), and events re-checks a live stream's session
through the `Authenticator`. Its request layer authenticates every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.auth.account import Account
from apprun.auth.admin import Admin
from apprun.auth.admin_api import ApiKeysController, AuditController, UsersController
from apprun.auth.api import AuthController, InvitationsController, jwks
from apprun.auth.api_keys import ApiKeys
from apprun.auth.authn import Authenticator, authentication_layer
from apprun.auth.bridges import IdentityMapper, KratosClient, OidcVerifier
from apprun.auth.deps import auth_dependencies
from apprun.auth.mailer import MailDelivery
from apprun.auth.oauth import OAuthLogins, OAuthProvider
from apprun.auth.oauth_api import OAuthController
from apprun.auth.opaque import refresh_key
from apprun.auth.passwords import Passwords, hash_threads
from apprun.auth.service import Auth
from apprun.auth.sessions import Sessions
from apprun.auth.settings import AuthSettings
from apprun.auth.tokens import TokenKeys
from apprun.events.service import Events
from apprun.kernel.config import ConfigError, section
from apprun.kernel.module import HealthCheck, Module, Wiring
from apprun.kernel.ratelimit import DatabaseRateLimiter, Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from apprun.rbac.service import Rbac
from apprun.tenancy.service import Tenancy

if TYPE_CHECKING:
    import typer
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.fastpath import RequestLayer
    from apprun.kernel.runtime import Runtime

__all__ = ["AuthModule"]


class AuthModule(Module):
    name = "auth"
    # Events: sign-ups and account changes are written to the events outbox, which only the
    # events module publishes and prunes.
    requires = ("rbac", "tenancy", "events")
    settings = AuthSettings
    messages = "auth"
    tables = "apprun.auth.tables"
    migrations = "apprun.auth.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        s = section(runtime.settings, AuthSettings)
        db = runtime.db
        rbac, tenancy = wiring.get(Rbac), wiring.get(Tenancy)
        secret = s.jwt_secret_value()
        self.token_keys = _token_keys(s, secret)
        self.passwords = Passwords(
            memory_kib=s.auth_argon2_memory_kib,
            time_cost=s.auth_argon2_time_cost,
            parallelism=s.auth_argon2_parallelism,
            threads=hash_threads(s.auth_hash_threads, runtime.settings.workers),
        )
        sessions = Sessions(
            self.token_keys,
            session_ttl=s.auth_session_ttl,
            grace=s.auth_refresh_reuse_grace,
            refresh_key=refresh_key(secret),
        )
        self.mail = MailDelivery(s, db, runtime.translator)
        self._health: dict[str, HealthCheck] = {}
        self.limiter = self._limiter(runtime, s)
        self.api_keys = ApiKeys(db, rbac)
        self.auth = Auth(
            s,
            db,
            passwords=self.passwords,
            sessions=sessions,
            tenancy=tenancy,
            rbac=rbac,
            mail=self.mail,
            limiter=self.limiter,
        )
        self.account = Account(
            s,
            db,
            passwords=self.passwords,
            policy=self.auth.policy,
            sessions=sessions,
            mail=self.mail,
            rbac=rbac,
            lockout=self.auth.sign_in_limits,
        )
        self.admin = Admin(
            db, passwords=self.passwords, policy=self.auth.policy, sessions=sessions, tenancy=tenancy, rbac=rbac
        )
        mapper = IdentityMapper(db, tenancy, rbac)
        kratos = KratosClient(s.kratos_public_url) if s.kratos_public_url else None
        self.authenticator = Authenticator(
            db, self.token_keys, self.api_keys, oidc=_oidc(s), kratos=kratos, mapper=mapper
        )
        self.oauth = OAuthLogins(
            s, db, providers=_oauth_providers(s.auth_oauth_providers), auth=self.auth, mapper=mapper
        )
        self._tasks: list[asyncio.Task[None]] = []
        for service in (self.auth, self.account, self.admin, self.api_keys, self.token_keys, self.authenticator):
            wiring.provide(service)
        wiring.provide(self.oauth)

    def _limiter(self, runtime: Runtime, s: AuthSettings) -> RateLimiter:
        if s.rate_limiter == "memory":  # explicit only: each worker counts alone
            return MemoryRateLimiter()
        if s.rate_limiter == "database":
            limits = (s.auth_rate_limit_ip, s.auth_rate_limit_account, s.auth_rate_limit_account_global)
            # The sweep must not delete a window that is still running: keep rows as long as the longest limit.
            return DatabaseRateLimiter(runtime.db, retention=max(Limit.parse(text).seconds for text in limits))
        from redis.asyncio import Redis

        client = Redis(
            host=s.redis_host or "127.0.0.1", port=s.redis_port, socket_timeout=1.0, socket_connect_timeout=1.0
        )

        async def check_redis() -> str:
            await client.ping()
            return "ok"

        # Optional: without Redis the limits fail open (logged), the service still answers.
        self._health["redis"] = (check_redis, False)
        # Every worker and instance of one deployment counts under the same prefix.
        return RedisRateLimiter(client, prefix=f"{s.redis_prefix}:rl:")

    @override
    def wire(self, wiring: Wiring) -> None:
        wiring.get(Rbac).add_source(self.api_keys)
        wiring.get(Tenancy).directory = self.account
        wiring.get(Events).use(sessions=self.authenticator)

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [
            AuthController,
            InvitationsController,
            OAuthController,
            ApiKeysController,
            AuditController,
            UsersController,
            jwks,
        ]

    @override
    def request_layers(self) -> Sequence[RequestLayer]:
        return [authentication_layer(self.authenticator)]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return auth_dependencies(
            auth=self.auth,
            account=self.account,
            admin=self.admin,
            api_keys=self.api_keys,
            token_keys=self.token_keys,
            oauth_logins=self.oauth,
        )

    @override
    def health_checks(self) -> Mapping[str, HealthCheck]:
        return self._health

    @override
    async def start(self, runtime: Runtime) -> None:
        self._tasks.append(asyncio.create_task(self.mail.run_retries(), name="apprun-mail-retries"))

    @override
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

    @classmethod
    @override
    def cli(cls) -> Mapping[str, typer.Typer]:
        from apprun.auth.cli import admin_app

        return {"admin": admin_app}


def _token_keys(s: AuthSettings, secret: str) -> TokenKeys:
    try:
        return TokenKeys(
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


def _oidc(s: AuthSettings) -> OidcVerifier | None:
    if not s.auth_oidc_issuer:
        return None
    if not s.auth_oidc_jwks_url:
        raise ConfigError("AUTH_OIDC_ISSUER needs AUTH_OIDC_JWKS_URL (the issuer's JWKS endpoint)")
    return OidcVerifier(
        issuer=s.auth_oidc_issuer,
        jwks_url=s.auth_oidc_jwks_url,
        audience=s.auth_oidc_audience,
        email_claim=s.auth_oidc_email_claim,
        tenant_claim=s.auth_oidc_tenant_claim,
        roles_claim=s.auth_oidc_roles_claim,
        leeway=s.auth_jwt_leeway,
    )


def _oauth_providers(raw: str) -> list[OAuthProvider]:
    try:
        items = json.loads(raw or "[]")
        return [OAuthProvider(**item) for item in items]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"AUTH_OAUTH_PROVIDERS is not a JSON list of providers: {exc}") from exc
