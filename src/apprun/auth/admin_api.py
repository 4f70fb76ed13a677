"""HTTP for API keys, the audit log and platform user administration."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.auth.deps import AdminDep, ApiKeysDep
from apprun.kernel.http import CtxDep

__all__ = ["ApiKeysController", "AuditController", "UsersController"]


class NewApiKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: str = "standard"
    role: str | None = None
    expires_in_days: int | None = None


class ApiKeysController(Controller):
    path = "/api/v1/api-keys"
    tags = ("api keys",)

    @get(summary="API keys of the active tenant (never the secret)")
    async def list_keys(self, ctx: CtxDep, api_keys: ApiKeysDep) -> list[dict[str, Any]]:
        return await api_keys.list(ctx)

    @post(summary="Create an API key; the key is in the reply, once")
    async def create_key(self, ctx: CtxDep, api_keys: ApiKeysDep, data: JSONBody[NewApiKey]) -> dict[str, Any]:
        return await api_keys.create(
            ctx, name=data.name, kind=data.kind, role=data.role, expires_in_days=data.expires_in_days
        )

    @delete("/{key_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Revoke an API key")
    async def revoke_key(self, ctx: CtxDep, api_keys: ApiKeysDep, key_id: FromPath[str]) -> None:
        await api_keys.revoke(ctx, key_id)


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ("audit",)

    @get(summary="Security events of the active tenant (all tenants for platform admins), newest first")
    async def events(
        self,
        ctx: CtxDep,
        admin: AdminDep,
        action: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        before: FromQuery[str | None] = None,
    ) -> list[dict[str, Any]]:
        return await admin.audit_events(ctx, action=action, limit=limit, before=before)


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ("users",)

    @get(summary="All users (platform admins)")
    async def list_users(
        self,
        ctx: CtxDep,
        admin: AdminDep,
        email: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        offset: FromQuery[int] = 0,
    ) -> list[dict[str, Any]]:
        return await admin.list_users(ctx, email=email, limit=limit, offset=offset)

    @post(summary="Create a user (platform admins)")
    async def create_user(self, ctx: CtxDep, admin: AdminDep, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        return await admin.create_user(ctx, data)

    @get("/{user_id:str}", summary="One user (platform admins)")
    async def get_user(self, ctx: CtxDep, admin: AdminDep, user_id: FromPath[str]) -> dict[str, Any]:
        return await admin.get_user(ctx, user_id)

    @patch("/{user_id:str}", summary="Change a user: name, disabled, platform_admin, email_verified, password")
    async def update_user(
        self, ctx: CtxDep, admin: AdminDep, user_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await admin.update_user(ctx, user_id, data)

    @delete("/{user_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a user (platform admins)")
    async def delete_user(self, ctx: CtxDep, admin: AdminDep, user_id: FromPath[str]) -> None:
        await admin.delete_user(ctx, user_id)
