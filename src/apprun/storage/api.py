"""HTTP for storage under ``/storage/v1``: Supabase Storage's API, so its clients work unchanged.

Parse, call the service with ``ctx``, shape the reply as Supabase Storage
does (``storage3`` reads ``Key`` from an upload, ``name`` from a bucket's
creation, and ``message``/``error``/``statusCode`` from an error, which
`storage_errors` adds to apprun's error body). Every route that sends file
bytes opts out of the app-wide gzip (``skip_compression``): compressing a
stream breaks ``Content-Length`` and ``Range``, and most files are already
compressed. Upload bodies are streamed, never read whole (`upload_body`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap

from apprun.kernel.context import RequestContext
from apprun.kernel.errors import BadRequest
from apprun.kernel.http import SKIP_COMPRESSION, CtxDep, request_context
from apprun.kernel.http_errors import exception_handlers, render_error
from apprun.storage.buckets import BucketOptions
from apprun.storage.deps import StorageDep
from apprun.storage.downloads import download_reply
from apprun.storage.listing import ListOptions
from apprun.storage.service import Storage
from apprun.storage.upload_body import upload_body

__all__ = ["storage_router"]

_BYTES = {SKIP_COMPRESSION: True}
#: Supabase Storage's ``error`` names, by status, for clients that branch on them (storage3's ``exists``).
_ERROR_NAMES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "Duplicate",
    413: "Payload too large",
    416: "InvalidRange",
    503: "service_unavailable",
}


class BucketBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str | msgspec.UnsetType = msgspec.UNSET
    #: Supabase's display name; apprun names a bucket by its id alone (docs/storage.md).
    name: str | msgspec.UnsetType = msgspec.UNSET
    public: bool | None = None
    file_size_limit: int | msgspec.UnsetType | None = msgspec.UNSET
    allowed_mime_types: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    type: str | msgspec.UnsetType = msgspec.UNSET

    def options(self) -> BucketOptions:
        return BucketOptions(
            public=self.public,
            file_size_limit=self.file_size_limit or None if self.file_size_limit is not msgspec.UNSET else None,
            allowed_mime_types=self.allowed_mime_types or None
            if self.allowed_mime_types is not msgspec.UNSET
            else None,
            clear_limit=self.file_size_limit is None,
            clear_types=self.allowed_mime_types is None or self.allowed_mime_types == [],
        )


class SortBy(msgspec.Struct, forbid_unknown_fields=True):
    column: str = "name"
    order: Literal["asc", "desc"] = "asc"


class ListBody(msgspec.Struct, forbid_unknown_fields=True):
    prefix: str = ""
    limit: int = 100
    offset: int = 0
    sortBy: SortBy = msgspec.field(default_factory=SortBy)
    search: str = ""


class MoveBody(msgspec.Struct, forbid_unknown_fields=True):
    bucketId: str
    sourceKey: str
    destinationKey: str
    destinationBucket: str | None = None

    def same_bucket(self) -> str:
        if self.destinationBucket not in (None, self.bucketId):
            raise BadRequest("storage.cross_bucket")
        return self.bucketId


class RemoveBody(msgspec.Struct, forbid_unknown_fields=True):
    prefixes: list[str]


def _key(path: str) -> str:
    # Litestar's ``path`` parameter keeps the slash that separates it from the bucket.
    return path[1:] if path.startswith("/") else path


# --- buckets ---------------------------------------------------------------------------------------


@get("/bucket", summary="The active tenant's buckets")
async def list_buckets(ctx: CtxDep, storage: StorageDep) -> list[dict[str, Any]]:
    return await storage.buckets.list_buckets(ctx)


@post("/bucket", status_code=200, summary="Create a bucket")
async def create_bucket(ctx: CtxDep, storage: StorageDep, data: JSONBody[BucketBody]) -> dict[str, Any]:
    name = data.id if data.id is not msgspec.UNSET else data.name
    if name is msgspec.UNSET:
        raise BadRequest("storage.invalid_bucket_name", params={"max": 63})
    return await storage.buckets.create(ctx, name, data.options())


@get("/bucket/{bucket_id:str}", summary="A bucket")
async def get_bucket(ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str]) -> dict[str, Any]:
    return await storage.buckets.get(ctx, bucket_id)


@put("/bucket/{bucket_id:str}", summary="Change a bucket's access, size limit or MIME types")
async def update_bucket(
    ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str], data: JSONBody[BucketBody]
) -> dict[str, Any]:
    return await storage.buckets.update(ctx, bucket_id, data.options())


@post("/bucket/{bucket_id:str}/empty", status_code=200, summary="Remove every object of a bucket")
async def empty_bucket(ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str]) -> dict[str, Any]:
    return await storage.empty(ctx, bucket_id)


@delete("/bucket/{bucket_id:str}", status_code=200, summary="Delete an empty bucket")
async def delete_bucket(ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str]) -> dict[str, Any]:
    return await storage.buckets.delete(ctx, bucket_id)


# --- objects ---------------------------------------------------------------------------------------


async def _upload(
    ctx: RequestContext,
    storage: Storage,
    request: Request[Any, Any, Any],
    bucket_id: str,
    path: str,
    *,
    replace: bool,
) -> dict[str, Any]:
    body = upload_body(request.stream(), request.headers.get("content-type"), request.headers.get("cache-control"))
    await body.start()
    upsert = request.headers.get("x-upsert", "false").lower() == "true"
    stored = await storage.upload(ctx, bucket_id, _key(path), body, upsert=upsert, replace=replace)
    return {"Key": f"{bucket_id}/{stored.name}", "Id": stored.id}


# Uploads have no framework body limit (request_max_body_size=None): the bytes are counted while they
# stream, against the bucket's limit (``STORAGE_MAX_FILE_SIZE`` at most; 413 at the first byte past it),
# the form's other fields are bounded (upload_body.py), and the kernel refuses a declared length past
# the module's `body_limits`.
@post(
    "/object/{bucket_id:str}/{path:path}",
    status_code=200,
    request_max_body_size=None,
    summary="Upload an object (x-upsert: replace)",
)
async def upload_object(
    ctx: CtxDep, storage: StorageDep, request: Request[Any, Any, Any], bucket_id: FromPath[str], path: FromPath[str]
) -> dict[str, Any]:
    return await _upload(ctx, storage, request, bucket_id, path, replace=False)


@put("/object/{bucket_id:str}/{path:path}", request_max_body_size=None, summary="Replace an object's bytes")
async def update_object(
    ctx: CtxDep, storage: StorageDep, request: Request[Any, Any, Any], bucket_id: FromPath[str], path: FromPath[str]
) -> dict[str, Any]:
    return await _upload(ctx, storage, request, bucket_id, path, replace=True)


@get(
    ["/object/{bucket_id:str}/{path:path}", "/object/authenticated/{bucket_id:str}/{path:path}"],
    opt=_BYTES,
    summary="Download an object (signed in)",
)
async def download_object(
    ctx: CtxDep,
    storage: StorageDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
    download: FromQuery[str | None] = None,
) -> Response[bytes] | Stream:
    found = await storage.open(ctx, bucket_id, _key(path))
    return download_reply(storage, found, request.headers, download)


@get("/object/public/{bucket_id:str}/{path:path}", opt=_BYTES, summary="Download an object of a public bucket")
async def download_public(
    ctx: CtxDep,
    storage: StorageDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
    download: FromQuery[str | None] = None,
) -> Response[bytes] | Stream:
    found = await storage.open_public(ctx, bucket_id, _key(path))
    return download_reply(storage, found, request.headers, download)


@get("/object/info/{bucket_id:str}/{path:path}", summary="An object's facts and metadata")
async def object_info(
    ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str], path: FromPath[str]
) -> dict[str, Any]:
    return await storage.info(ctx, bucket_id, _key(path))


@post("/object/list/{bucket_id:str}", status_code=200, summary="One folder of a bucket")
async def list_objects(
    ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str], data: JSONBody[ListBody]
) -> list[dict[str, Any]]:
    options = ListOptions(
        prefix=data.prefix,
        limit=data.limit,
        offset=data.offset,
        sort_column=data.sortBy.column,
        sort_order=data.sortBy.order,
        search=data.search,
    )
    return await storage.list_objects(ctx, bucket_id, options)


@post("/object/move", status_code=200, summary="Move (rename) an object")
async def move_object(ctx: CtxDep, storage: StorageDep, data: JSONBody[MoveBody]) -> dict[str, Any]:
    await storage.move(ctx, data.same_bucket(), data.sourceKey, data.destinationKey)
    return {"message": "Successfully moved"}


@post("/object/copy", status_code=200, summary="Copy an object")
async def copy_object(ctx: CtxDep, storage: StorageDep, data: JSONBody[MoveBody]) -> dict[str, Any]:
    bucket = data.same_bucket()
    stored = await storage.copy(ctx, bucket, data.sourceKey, data.destinationKey)
    return {"Key": f"{bucket}/{stored.name}", "Id": stored.id}


@delete("/object/{bucket_id:str}", status_code=200, summary="Remove objects by key")
async def remove_objects(
    ctx: CtxDep, storage: StorageDep, bucket_id: FromPath[str], data: JSONBody[RemoveBody]
) -> list[dict[str, Any]]:
    return await storage.remove(ctx, bucket_id, data.prefixes)


def _storage_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """apprun's error body, plus Supabase Storage's ``statusCode`` and ``error`` for its clients."""
    status, headers, body = render_error(
        exc, request_context(request.scope), method=request.method, path=request.url.path
    )
    shaped = msgspec.json.decode(body)
    shaped["statusCode"] = str(status)
    shaped["error"] = _ERROR_NAMES.get(status, "internal" if status >= 500 else "error")
    return Response(
        content=msgspec.json.encode(shaped), status_code=status, media_type="application/json", headers=headers
    )


def storage_exception_handlers() -> ExceptionHandlersMap:
    """Every class the app's own handlers name (Litestar picks the most specific class across layers)."""
    return dict.fromkeys(exception_handlers(), _storage_error)


def storage_router(extra: Sequence[ControllerRouterHandler] = ()) -> Router:
    """Every ``/storage/v1`` route, with Supabase Storage's error body; ``extra``: the module's other
    files' routes under the same path (tus_api.py's)."""
    return Router(
        path="/storage/v1",
        tags=["storage"],
        exception_handlers=storage_exception_handlers(),
        route_handlers=[
            list_buckets,
            create_bucket,
            get_bucket,
            update_bucket,
            empty_bucket,
            delete_bucket,
            upload_object,
            update_object,
            download_object,
            download_public,
            object_info,
            list_objects,
            move_object,
            copy_object,
            remove_objects,
            *extra,
        ],
    )
