"""HTTP for TUS 1.0.0 resumable uploads at ``/storage/v1/upload/resumable``, as Supabase Storage serves them.

``OPTIONS`` tells the capabilities (no token needed); ``POST`` creates an
upload (``Upload-Length``, ``Upload-Metadata`` with ``bucketName`` and
``objectName``, ``x-upsert``) and may carry its first bytes; ``HEAD`` gives the
offset to resume from; ``PATCH`` appends; ``DELETE`` abandons. The protocol's
headers are parsed in `apprun.storage.tus`, the uploads kept by
`apprun.storage.uploads.Uploads`. Bodies stream (``request_max_body_size``
None): a ``PATCH`` is bounded by the upload's remaining length, counted as the
bytes arrive, and the kernel's `body_limits` refuses a declared length past
the largest object before the handler runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, delete, head, patch, post, route
from litestar.enums import HttpMethod, MediaType
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler

from apprun.kernel.errors import ApiError, BadRequest
from apprun.kernel.http import CtxDep
from apprun.storage.deps import UploadsDep
from apprun.storage.tus import (
    OCTET_STREAM,
    VERSION,
    capabilities,
    check_resumable,
    encode_metadata,
    http_date,
    parse_length,
    parse_metadata,
    parse_offset,
)
from apprun.storage.uploads import UploadState

__all__ = ["RESUMABLE", "tus_routes"]

#: The path under ``/storage/v1``; `Location` answers name an upload beneath it.
RESUMABLE = "/upload/resumable"
_PREFIX = "/storage/v1" + RESUMABLE


@contextlib.contextmanager
def _tus_errors() -> Iterator[None]:
    """Every answer names the protocol version, refusals included (tus clients look for it)."""
    try:
        yield
    except ApiError as exc:
        exc.headers.setdefault("Tus-Resumable", VERSION)
        raise


def _content_length(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None


def _empty(*, status_code: int, headers: dict[str, str]) -> Response[None]:
    # TUS answers are headers only: no JSON ``null`` body.
    return Response(None, status_code=status_code, headers=headers, media_type=MediaType.TEXT)


def _progress(upload: UploadState) -> dict[str, str]:
    return {
        "Tus-Resumable": VERSION,
        "Upload-Offset": str(upload.offset),
        "Upload-Expires": http_date(upload.expires_at),
    }


@route(RESUMABLE, http_method=[HttpMethod.OPTIONS], status_code=204, summary="TUS: the server's capabilities")
async def tus_options(uploads: UploadsDep) -> Response[None]:
    return _empty(status_code=204, headers=capabilities(uploads.max_size))


@route(
    RESUMABLE + "/{upload_id:str}",
    http_method=[HttpMethod.OPTIONS],
    status_code=204,
    summary="TUS: the server's capabilities",
)
async def tus_upload_options(uploads: UploadsDep) -> Response[None]:
    return _empty(status_code=204, headers=capabilities(uploads.max_size))


@post(RESUMABLE, status_code=201, request_max_body_size=None, summary="TUS: create a resumable upload")
async def tus_create(ctx: CtxDep, uploads: UploadsDep, request: Request[Any, Any, Any]) -> Response[None]:
    with _tus_errors():
        check_resumable(request.headers)
        length = parse_length(request.headers)
        meta = parse_metadata(request.headers.get("upload-metadata"))
        upsert = request.headers.get("x-upsert", "false").lower() == "true"
        with_data = (request.headers.get("content-type") or "").split(";")[0].strip().lower() == OCTET_STREAM
        declared = _content_length(request)
        if with_data and declared is not None and declared > length:
            raise BadRequest("storage.tus_header", params={"name": "Content-Length"})
        upload, _ = await uploads.create(ctx, meta, length, upsert=upsert)
        if with_data and not upload.done:
            upload, _ = await uploads.append(ctx, upload, 0, request.stream(), declared)
    return _empty(status_code=201, headers={"Location": f"{_PREFIX}/{upload.id}", **_progress(upload)})


@head(RESUMABLE + "/{upload_id:str}", summary="TUS: where to resume an upload")
async def tus_head(
    ctx: CtxDep, uploads: UploadsDep, request: Request[Any, Any, Any], upload_id: FromPath[str]
) -> Response[None]:
    with _tus_errors():
        check_resumable(request.headers)
        upload = await uploads.find(ctx, upload_id)
    metadata = encode_metadata(
        {
            "bucketName": upload.bucket,
            "objectName": upload.key,
            "contentType": upload.content_type,
            "cacheControl": upload.cache_control,
        }
    )
    headers = {
        **_progress(upload),
        "Upload-Length": str(upload.length),
        "Upload-Metadata": metadata,
        # The offset changes with every PATCH: a cached answer would resume at the wrong byte.
        "Cache-Control": "no-store",
    }
    return _empty(status_code=200, headers=headers)


@patch(RESUMABLE + "/{upload_id:str}", status_code=204, request_max_body_size=None, summary="TUS: append bytes")
async def tus_patch(
    ctx: CtxDep, uploads: UploadsDep, request: Request[Any, Any, Any], upload_id: FromPath[str]
) -> Response[None]:
    with _tus_errors():
        check_resumable(request.headers)
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type != OCTET_STREAM:
            raise ApiError("storage.tus_content_type", status=415, params={"type": OCTET_STREAM})
        offset = parse_offset(request.headers)
        upload = await uploads.find(ctx, upload_id)
        upload, _ = await uploads.append(ctx, upload, offset, request.stream(), _content_length(request))
    return _empty(status_code=204, headers=_progress(upload))


@delete(RESUMABLE + "/{upload_id:str}", status_code=204, summary="TUS: abandon an upload")
async def tus_delete(
    ctx: CtxDep, uploads: UploadsDep, request: Request[Any, Any, Any], upload_id: FromPath[str]
) -> Response[None]:
    with _tus_errors():
        check_resumable(request.headers)
        await uploads.terminate(ctx, upload_id)
    return _empty(status_code=204, headers={"Tus-Resumable": VERSION})


def tus_routes() -> list[ControllerRouterHandler]:
    """The TUS routes, for `apprun.storage.api.storage_router` (Supabase Storage's error body)."""
    return [tus_options, tus_upload_options, tus_create, tus_head, tus_patch, tus_delete]
