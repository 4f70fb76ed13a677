"""HTTP for defining collections: ``/api/v1/collections`` (platform admins only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from apprun.data.schema.catalog import Catalog, parse_definition
from apprun.kernel.context import RequestContext
from apprun.kernel.errors import BadRequest, Forbidden, Unauthorized
from apprun.kernel.http import ctx_of
from apprun.rbac.service import PLATFORM_ADMIN

__all__ = ["CollectionsController", "require_platform_admin"]


def require_platform_admin(ctx: RequestContext) -> None:
    if not ctx.is_authenticated and ctx.auth_method == "anonymous":
        raise Unauthorized()
    if not ctx.extra.get(PLATFORM_ADMIN):
        raise Forbidden("auth.platform_admin_only")


def _catalog(state: State) -> Catalog:
    catalog: Catalog = state.catalog
    return catalog


async def _definition(request: Request[Any, Any, Any]) -> Any:
    if not (await request.body()).strip():
        raise BadRequest("request.malformed", details="the body is empty; send the definition as JSON")
    # The kernel's request decodes it: 400 for a body that is not UTF-8, not JSON or nested too deep.
    return await request.json()


class CollectionsController(Controller):
    path = "/api/v1/collections"
    tags = ("collections",)

    @get(summary="Every collection's definition")
    async def list_collections(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        require_platform_admin(ctx_of(request))
        collections = await _catalog(state).all()
        return [
            c.model_dump(mode="json", exclude_none=True) for c in sorted(collections.values(), key=lambda c: c.name)
        ]

    @post(
        summary="Create or change a collection",
        description="`?dry_run=true` returns the steps and the SQL; destructive steps need `?allow_destructive=true`.",
    )
    async def apply_collection(
        self,
        request: Request[Any, Any, Any],
        state: State,
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> Response[dict[str, Any]]:
        ctx = ctx_of(request)
        require_platform_admin(ctx)
        collection = parse_definition(await _definition(request))
        result = await _catalog(state).apply(
            collection, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run
        )
        status = 201 if result.operation == "create" and result.applied else 200
        return Response(result.to_dict(), status_code=status)

    @get("/{name:str}", summary="One collection's definition")
    async def get_collection(
        self, request: Request[Any, Any, Any], state: State, name: FromPath[str]
    ) -> dict[str, Any]:
        require_platform_admin(ctx_of(request))
        return (await _catalog(state).require(name)).model_dump(mode="json", exclude_none=True)

    @put("/{name:str}", summary="Change a collection to this definition")
    async def put_collection(
        self,
        request: Request[Any, Any, Any],
        state: State,
        name: FromPath[str],
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> Response[dict[str, Any]]:
        ctx = ctx_of(request)
        require_platform_admin(ctx)
        body = await _definition(request)
        if isinstance(body, dict):
            body.setdefault("name", name)
        collection = parse_definition(body)
        if collection.name != name:
            raise BadRequest("data.collection_name_mismatch", params={"name": name})
        result = await _catalog(state).apply(
            collection, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run
        )
        status = 201 if result.operation == "create" and result.applied else 200
        return Response(result.to_dict(), status_code=status)

    @delete("/{name:str}", summary="Drop a collection and its rows (needs ?allow_destructive=true)", status_code=200)
    async def drop_collection(
        self,
        request: Request[Any, Any, Any],
        state: State,
        name: FromPath[str],
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> dict[str, Any]:
        ctx = ctx_of(request)
        require_platform_admin(ctx)
        result = await _catalog(state).drop(
            name, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run
        )
        return result.to_dict()

    @get("/{name:str}/history", summary="Every change applied to a collection")
    async def collection_history(
        self, request: Request[Any, Any, Any], state: State, name: FromPath[str]
    ) -> list[dict[str, Any]]:
        require_platform_admin(ctx_of(request))
        await _catalog(state).require(name)
        return await _catalog(state).history(name)
