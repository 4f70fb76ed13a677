"""HTTP for defining collections: ``/api/v1/collections`` (platform admins only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery

from apprun.data.deps import CatalogDep
from apprun.data.schema.catalog import parse_definition
from apprun.kernel.context import RequestContext
from apprun.kernel.errors import BadRequest, Forbidden, Unauthorized
from apprun.kernel.http import CtxDep
from apprun.rbac.service import PLATFORM_ADMIN

__all__ = ["CollectionsController", "require_platform_admin"]


def require_platform_admin(ctx: RequestContext) -> None:
    if not ctx.is_authenticated and ctx.auth_method == "anonymous":
        raise Unauthorized()
    if not ctx.extra.get(PLATFORM_ADMIN):
        raise Forbidden("auth.platform_admin_only")


async def _definition(request: Request[Any, Any, Any]) -> Any:
    if not (await request.body()).strip():
        raise BadRequest("request.malformed", details="the body is empty; send the definition as JSON")
    # The kernel's request decodes it: 400 for a body that is not UTF-8, not JSON or nested too deep.
    return await request.json()


class CollectionsController(Controller):
    path = "/api/v1/collections"
    tags = ("collections",)

    @get(summary="Every collection's definition")
    async def list_collections(self, ctx: CtxDep, catalog: CatalogDep) -> list[dict[str, Any]]:
        require_platform_admin(ctx)
        collections = await catalog.all()
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
        ctx: CtxDep,
        catalog: CatalogDep,
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> Response[dict[str, Any]]:
        require_platform_admin(ctx)
        collection = parse_definition(await _definition(request))
        result = await catalog.apply(
            collection, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run
        )
        status = 201 if result.operation == "create" and result.applied else 200
        return Response(result.to_dict(), status_code=status)

    @get("/{name:str}", summary="One collection's definition")
    async def get_collection(self, ctx: CtxDep, catalog: CatalogDep, name: FromPath[str]) -> dict[str, Any]:
        require_platform_admin(ctx)
        return (await catalog.require(name)).model_dump(mode="json", exclude_none=True)

    @put("/{name:str}", summary="Change a collection to this definition")
    async def put_collection(
        self,
        *,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        catalog: CatalogDep,
        name: FromPath[str],
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> Response[dict[str, Any]]:
        require_platform_admin(ctx)
        body = await _definition(request)
        if isinstance(body, dict):
            body.setdefault("name", name)
        collection = parse_definition(body)
        if collection.name != name:
            raise BadRequest("data.collection_name_mismatch", params={"name": name})
        result = await catalog.apply(
            collection, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run
        )
        status = 201 if result.operation == "create" and result.applied else 200
        return Response(result.to_dict(), status_code=status)

    @delete("/{name:str}", summary="Drop a collection and its rows (needs ?allow_destructive=true)", status_code=200)
    async def drop_collection(
        self,
        ctx: CtxDep,
        catalog: CatalogDep,
        name: FromPath[str],
        dry_run: FromQuery[bool] = False,
        allow_destructive: FromQuery[bool] = False,
    ) -> dict[str, Any]:
        require_platform_admin(ctx)
        result = await catalog.drop(name, actor=ctx.user_id, allow_destructive=allow_destructive, dry_run=dry_run)
        return result.to_dict()

    @get("/{name:str}/history", summary="Every change applied to a collection")
    async def collection_history(self, ctx: CtxDep, catalog: CatalogDep, name: FromPath[str]) -> list[dict[str, Any]]:
        require_platform_admin(ctx)
        await catalog.require(name)
        return await catalog.history(name)
