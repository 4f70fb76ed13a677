"""The auth module's handler dependencies: the parameter names its handlers take, and their types.

In a handler, ``auth: AuthDep`` is the `Auth` service (sign-up, sign-in,
tokens, sessions), ``account: AccountDep`` the user's own `Account`,
``admin: AdminDep`` the platform admins' `Admin`, ``api_keys: ApiKeysDep``
the `ApiKeys`, ``token_keys: TokenKeysDep`` the `TokenKeys` and
``oauth_logins: OAuthLoginsDep`` the social logins' `OAuthLogins` (see
`apprun.kernel.http`). `client` is who is calling, as the auth flows record it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from apprun.auth.account import Account
from apprun.auth.admin import Admin
from apprun.auth.api_keys import ApiKeys
from apprun.auth.oauth import OAuthLogins
from apprun.auth.service import Auth, Client
from apprun.auth.tokens import TokenKeys
from apprun.kernel.context import RequestContext
from apprun.kernel.http import provide_service, user_agent

__all__ = [
    "AccountDep",
    "AdminDep",
    "ApiKeysDep",
    "AuthDep",
    "OAuthLoginsDep",
    "TokenKeysDep",
    "auth_dependencies",
    "client",
]

AuthDep = NamedDependency[Auth]
AccountDep = NamedDependency[Account]
AdminDep = NamedDependency[Admin]
ApiKeysDep = NamedDependency[ApiKeys]
TokenKeysDep = NamedDependency[TokenKeys]
OAuthLoginsDep = NamedDependency[OAuthLogins]


def auth_dependencies(
    *, auth: Auth, account: Account, admin: Admin, api_keys: ApiKeys, token_keys: TokenKeys, oauth_logins: OAuthLogins
) -> dict[str, Provide]:
    """What `AuthModule.dependencies` returns: each service under its handlers' parameter name."""
    services: dict[str, object] = {
        "auth": auth,
        "account": account,
        "admin": admin,
        "api_keys": api_keys,
        "token_keys": token_keys,
        "oauth_logins": oauth_logins,
    }
    return {name: provide_service(service) for name, service in services.items()}


def client(request: Request[Any, Any, Any], ctx: RequestContext) -> Client:
    """Who is calling (address, user agent, locale), as sign-in and the rate limits record it.

    A plain function rather than a dependency: a handler taking it beside
    ``auth`` would resolve the two in a task group (see `provide_service`).
    """
    return Client(ip=ctx.client_ip, user_agent=user_agent(request), locale=ctx.locale)
