"""HTTP for roles, policies and "why am I allowed/denied?"."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from apprun.kernel.http import ctx_of
from apprun.rbac.service import Rbac

__all__ = ["RbacController"]


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str | None = None


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    object: str
    action: str
    effect: str = "allow"


def _rbac(state: State) -> Rbac:
    service: Rbac = state.rbac
    return service


class RbacController(Controller):
    path = "/api/v1"
    tags = ("rbac",)

    @get("/roles", summary="Roles of the active tenant")
    async def list_roles(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        return await _rbac(state).list_roles(ctx_of(request))

    @post("/roles", summary="Create a custom role")
    async def create_role(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[RoleBody]
    ) -> dict[str, Any]:
        return await _rbac(state).create_role(ctx_of(request), data.name, data.description)

    @delete("/roles/{name:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a custom role no one holds")
    async def delete_role(self, request: Request[Any, Any, Any], state: State, name: FromPath[str]) -> None:
        await _rbac(state).delete_role(ctx_of(request), name)

    @get("/policies", summary="Policy rules of the active tenant")
    async def list_policies(
        self, request: Request[Any, Any, Any], state: State, role: FromQuery[str | None] = None
    ) -> list[dict[str, Any]]:
        return await _rbac(state).list_policies(ctx_of(request), role)

    @post("/policies", summary="Grant (or deny) a role an action on an object pattern")
    async def add_policy(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[PolicyBody]
    ) -> dict[str, Any]:
        return await _rbac(state).add_policy(ctx_of(request), data.role, data.object, data.action, data.effect)

    @delete("/policies/{policy_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Remove a policy rule")
    async def remove_policy(self, request: Request[Any, Any, Any], state: State, policy_id: FromPath[str]) -> None:
        await _rbac(state).remove_policy(ctx_of(request), policy_id)

    @get("/authz/explain", summary="Would I be allowed this, and which rule decides?")
    async def explain(
        self, request: Request[Any, Any, Any], state: State, action: FromQuery[str], object: FromQuery[str]
    ) -> dict[str, Any]:
        return await _rbac(state).explain(ctx_of(request), action, object)
