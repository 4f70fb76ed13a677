"""HTTP for tenants and their members (``/api/v1/tenants``)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.kernel.http import ctx_of
from apprun.tenancy.service import Tenancy

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


def _tenancy(state: State) -> Tenancy:
    service: Tenancy = state.tenancy
    return service


class TenantsController(Controller):
    path = "/api/v1/tenants"
    tags = ("tenants",)

    @get(summary="Tenants I belong to, with my role")
    async def list_tenants(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        return await _tenancy(state).list_mine(ctx_of(request))

    @post(summary="Create a tenant; I become its owner")
    async def create_tenant(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[TenantBody]
    ) -> dict[str, Any]:
        return await _tenancy(state).create(ctx_of(request), data.name)

    @get("/{tenant_id:str}", summary="One tenant")
    async def get_tenant(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str]
    ) -> dict[str, Any]:
        return await _tenancy(state).get(ctx_of(request), tenant_id)

    @patch("/{tenant_id:str}", summary="Rename a tenant; deactivate or reactivate it (platform admins)")
    async def update_tenant(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str], data: JSONBody[TenantPatch]
    ) -> dict[str, Any]:
        return await _tenancy(state).update(ctx_of(request), tenant_id, name=data.name, disabled=data.disabled)

    @delete("/{tenant_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a tenant (owners only)")
    async def delete_tenant(self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str]) -> None:
        await _tenancy(state).delete(ctx_of(request), tenant_id)

    @get("/{tenant_id:str}/members", summary="Members and their roles")
    async def list_members(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str]
    ) -> list[dict[str, Any]]:
        return await _tenancy(state).list_members(ctx_of(request), tenant_id)

    @post(
        "/{tenant_id:str}/members",
        summary="Invite someone by email (the same answer whether or not they have an account); "
        "a platform admin adds an existing user at once",
    )
    async def add_member(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str], data: JSONBody[MemberBody]
    ) -> dict[str, Any]:
        return await _tenancy(state).add_member(ctx_of(request), tenant_id, data.email, data.role)

    @get("/{tenant_id:str}/invitations", summary="Pending invitations (email, role, who invited, when, until when)")
    async def list_invitations(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str]
    ) -> list[dict[str, Any]]:
        return await _tenancy(state).list_invitations(ctx_of(request), tenant_id)

    @delete(
        "/{tenant_id:str}/invitations/{invitation_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a pending invitation; its link stops working",
    )
    async def revoke_invitation(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str], invitation_id: FromPath[str]
    ) -> None:
        await _tenancy(state).revoke_invitation(ctx_of(request), tenant_id, invitation_id)

    @patch("/{tenant_id:str}/members/{user_id:str}", summary="Change a member's role")
    async def change_role(
        self,
        request: Request[Any, Any, Any],
        state: State,
        tenant_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[RoleBody],
    ) -> dict[str, Any]:
        return await _tenancy(state).change_role(ctx_of(request), tenant_id, user_id, data.role)

    @delete("/{tenant_id:str}/members/{user_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Remove a member")
    async def remove_member(
        self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str], user_id: FromPath[str]
    ) -> None:
        await _tenancy(state).remove_member(ctx_of(request), tenant_id, user_id)

    @post("/{tenant_id:str}/leave", status_code=HTTP_204_NO_CONTENT, summary="Leave a tenant")
    async def leave(self, request: Request[Any, Any, Any], state: State, tenant_id: FromPath[str]) -> None:
        await _tenancy(state).leave(ctx_of(request), tenant_id)
