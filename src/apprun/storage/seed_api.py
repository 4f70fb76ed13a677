"""HTTP for the seed architecture's storage paths: upload and download under ``/api/v1/storage``.

``POST /api/v1/storage/upload`` and ``GET /api/v1/storage/download/{key}``.

The upload is a ``multipart/form-data`` form with ``file`` and, optionally,
``bucket`` and ``key`` (as fields before the file, or as query parameters).
Without a bucket it goes to the tenant's ``default`` bucket, made private on
first use; without a key, to ``<new id>/<file name>``. Both paths are the
same service calls as ``/storage/v1``, with apprun's own error body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from apprun.kernel.errors import BadRequest
from apprun.kernel.http import SKIP_COMPRESSION, CtxDep
from apprun.kernel.ids import new_id
from apprun.storage.deps import StorageDep
from apprun.storage.downloads import download_reply
from apprun.storage.upload_body import FormUpload, upload_body

__all__ = ["seed_routes"]

DEFAULT_BUCKET = "default"


@post(
    "/api/v1/storage/upload",
    status_code=201,
    tags=["storage"],
    request_max_body_size=None,  # counted while it streams, as /storage/v1's uploads (api.py)
    summary="Upload a file (multipart form)",
)
async def seed_upload(
    ctx: CtxDep,
    storage: StorageDep,
    request: Request[Any, Any, Any],
    bucket: FromQuery[str | None] = None,
    key: FromQuery[str | None] = None,
) -> dict[str, Any]:
    body = upload_body(request.stream(), request.headers.get("content-type"))
    if not isinstance(body, FormUpload):
        raise BadRequest("storage.malformed_multipart")
    await body.start()
    bucket_id = bucket or body.fields.get("bucket") or DEFAULT_BUCKET
    name = key or body.fields.get("key") or f"{new_id()}/{body.filename or 'file'}"
    if bucket_id == DEFAULT_BUCKET:
        await storage.ensure_default_bucket(ctx, DEFAULT_BUCKET)
    upsert = request.headers.get("x-upsert", "false").lower() == "true"
    stored = await storage.upload(ctx, bucket_id, name, body, upsert=upsert)
    return {
        "bucket": bucket_id,
        "key": stored.name,
        "id": stored.id,
        "size": stored.size,
        "mime_type": stored.mime_type,
        "etag": stored.etag,
        "url": f"/api/v1/storage/download/{stored.name}"
        + ("" if bucket_id == DEFAULT_BUCKET else f"?bucket={bucket_id}"),
    }


@get("/api/v1/storage/download/{key:path}", opt={SKIP_COMPRESSION: True}, tags=["storage"], summary="Download a file")
async def seed_download(
    ctx: CtxDep,
    storage: StorageDep,
    *,
    request: Request[Any, Any, Any],
    key: FromPath[str],
    bucket: FromQuery[str] = DEFAULT_BUCKET,
    download: FromQuery[str | None] = None,
) -> Response[bytes] | Stream:
    found = await storage.open(ctx, bucket, key[1:] if key.startswith("/") else key)
    return download_reply(storage, found, request.headers, download)


def seed_routes() -> list[Any]:
    return [seed_upload, seed_download]
