"""HTTP for tenants and their members (``/api/v1/tenants``)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.kernel.http import CtxDep
from apprun.tenancy.deps import TenancyDep

__all__ = ["TenantsController"]


class TenantBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class TenantPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    #: Platform admins only: true deactivates the tenant (every credential of it stops working), false reactivates.
    disabled: bool | None = None


class MemberBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: str = "member"


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str


class TenantsController(Controller):
    path = "/api/v1/tenants"
    tags = ("tenants",)

    @get(summary="Tenants I belong to, with my role")
    async def list_tenants(self, ctx: CtxDep, tenancy: TenancyDep) -> list[dict[str, Any]]:
        return await tenancy.list_mine(ctx)

    @post(summary="Create a tenant; I become its owner")
    async def create_tenant(self, ctx: CtxDep, tenancy: TenancyDep, data: JSONBody[TenantBody]) -> dict[str, Any]:
        return await tenancy.create(ctx, data.name)

    @get("/{tenant_id:str}", summary="One tenant")
    async def get_tenant(self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str]) -> dict[str, Any]:
        return await tenancy.get(ctx, tenant_id)

    @patch("/{tenant_id:str}", summary="Rename a tenant; deactivate or reactivate it (platform admins)")
    async def update_tenant(
        self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str], data: JSONBody[TenantPatch]
    ) -> dict[str, Any]:
        return await tenancy.update(ctx, tenant_id, name=data.name, disabled=data.disabled)

    @delete("/{tenant_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a tenant (owners only)")
    async def delete_tenant(self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str]) -> None:
        await tenancy.delete(ctx, tenant_id)

    @get("/{tenant_id:str}/members", summary="Members and their roles")
    async def list_members(self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str]) -> list[dict[str, Any]]:
        return await tenancy.list_members(ctx, tenant_id)

    @post(
        "/{tenant_id:str}/members",
        summary="Invite someone by email (the same answer whether or not they have an account); "
        "a platform admin adds an existing user at once",
    )
    async def add_member(
        self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str], data: JSONBody[MemberBody]
    ) -> dict[str, Any]:
        return await tenancy.add_member(ctx, tenant_id, data.email, data.role)

    @get("/{tenant_id:str}/invitations", summary="Pending invitations (email, role, who invited, when, until when)")
    async def list_invitations(
        self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str]
    ) -> list[dict[str, Any]]:
        return await tenancy.list_invitations(ctx, tenant_id)

    @delete(
        "/{tenant_id:str}/invitations/{invitation_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a pending invitation; its link stops working",
    )
    async def revoke_invitation(
        self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str], invitation_id: FromPath[str]
    ) -> None:
        await tenancy.revoke_invitation(ctx, tenant_id, invitation_id)

    @patch("/{tenant_id:str}/members/{user_id:str}", summary="Change a member's role")
    async def change_role(
        self,
        ctx: CtxDep,
        tenancy: TenancyDep,
        tenant_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[RoleBody],
    ) -> dict[str, Any]:
        return await tenancy.change_role(ctx, tenant_id, user_id, data.role)

    @delete("/{tenant_id:str}/members/{user_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Remove a member")
    async def remove_member(
        self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str], user_id: FromPath[str]
    ) -> None:
        await tenancy.remove_member(ctx, tenant_id, user_id)

    @post("/{tenant_id:str}/leave", status_code=HTTP_204_NO_CONTENT, summary="Leave a tenant")
    async def leave(self, ctx: CtxDep, tenancy: TenancyDep, tenant_id: FromPath[str]) -> None:
        await tenancy.leave(ctx, tenant_id)
