"""HTTP for roles, policies and "why am I allowed/denied?"."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.kernel.http import CtxDep
from apprun.rbac.deps import RbacDep

__all__ = ["RbacController"]


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str | None = None


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    object: str
    action: str
    effect: str = "allow"


class RbacController(Controller):
    path = "/api/v1"
    tags = ("rbac",)

    @get("/roles", summary="Roles of the active tenant")
    async def list_roles(self, ctx: CtxDep, rbac: RbacDep) -> list[dict[str, Any]]:
        return await rbac.list_roles(ctx)

    @post("/roles", summary="Create a custom role")
    async def create_role(self, ctx: CtxDep, rbac: RbacDep, data: JSONBody[RoleBody]) -> dict[str, Any]:
        return await rbac.create_role(ctx, data.name, data.description)

    @delete("/roles/{name:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a custom role no one holds")
    async def delete_role(self, ctx: CtxDep, rbac: RbacDep, name: FromPath[str]) -> None:
        await rbac.delete_role(ctx, name)

    @get("/policies", summary="Policy rules of the active tenant")
    async def list_policies(
        self, ctx: CtxDep, rbac: RbacDep, role: FromQuery[str | None] = None
    ) -> list[dict[str, Any]]:
        return await rbac.list_policies(ctx, role)

    @post("/policies", summary="Grant (or deny) a role an action on an object pattern")
    async def add_policy(self, ctx: CtxDep, rbac: RbacDep, data: JSONBody[PolicyBody]) -> dict[str, Any]:
        return await rbac.add_policy(ctx, data.role, data.object, data.action, data.effect)

    @delete("/policies/{policy_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Remove a policy rule")
    async def remove_policy(self, ctx: CtxDep, rbac: RbacDep, policy_id: FromPath[str]) -> None:
        await rbac.remove_policy(ctx, policy_id)

    @get("/authz/explain", summary="Would I be allowed this, and which rule decides?")
    async def explain(
        self, ctx: CtxDep, rbac: RbacDep, action: FromQuery[str], object: FromQuery[str]
    ) -> dict[str, Any]:
        return await rbac.explain(ctx, action, object)
