"""HTTP for API keys, the audit log and platform user administration."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.auth.admin import Admin
from apprun.auth.api_keys import ApiKeys
from apprun.kernel.http import ctx_of

__all__ = ["ApiKeysController", "AuditController", "UsersController"]


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: str = "standard"
    role: str | None = None
    expires_in_days: int | None = None


def _keys(state: State) -> ApiKeys:
    service: ApiKeys = state.api_keys
    return service


def _admin(state: State) -> Admin:
    service: Admin = state.admin
    return service


class ApiKeysController(Controller):
    path = "/api/v1/api-keys"
    tags = ("api keys",)

    @get(summary="API keys of the active tenant (never the secret)")
    async def list_keys(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        return await _keys(state).list(ctx_of(request))

    @post(summary="Create an API key; the key is in the reply, once")
    async def create_key(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[NewApiKey]
    ) -> dict[str, Any]:
        return await _keys(state).create(
            ctx_of(request), name=data.name, kind=data.kind, role=data.role, expires_in_days=data.expires_in_days
        )

    @delete("/{key_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Revoke an API key")
    async def revoke_key(self, request: Request[Any, Any, Any], state: State, key_id: FromPath[str]) -> None:
        await _keys(state).revoke(ctx_of(request), key_id)


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ("audit",)

    @get(summary="Security events of the active tenant (all tenants for platform admins), newest first")
    async def events(
        self,
        request: Request[Any, Any, Any],
        state: State,
        action: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        before: FromQuery[str | None] = None,
    ) -> list[dict[str, Any]]:
        return await _admin(state).audit_events(ctx_of(request), action=action, limit=limit, before=before)


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ("users",)

    @get(summary="All users (platform admins)")
    async def list_users(
        self,
        request: Request[Any, Any, Any],
        state: State,
        email: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        offset: FromQuery[int] = 0,
    ) -> list[dict[str, Any]]:
        return await _admin(state).list_users(ctx_of(request), email=email, limit=limit, offset=offset)

    @post(summary="Create a user (platform admins)")
    async def create_user(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await _admin(state).create_user(ctx_of(request), data)

    @get("/{user_id:str}", summary="One user (platform admins)")
    async def get_user(self, request: Request[Any, Any, Any], state: State, user_id: FromPath[str]) -> dict[str, Any]:
        return await _admin(state).get_user(ctx_of(request), user_id)

    @patch("/{user_id:str}", summary="Change a user: name, disabled, platform_admin, email_verified, password")
    async def update_user(
        self, request: Request[Any, Any, Any], state: State, user_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await _admin(state).update_user(ctx_of(request), user_id, data)

    @delete("/{user_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a user (platform admins)")
    async def delete_user(self, request: Request[Any, Any, Any], state: State, user_id: FromPath[str]) -> None:
        await _admin(state).delete_user(ctx_of(request), user_id)
