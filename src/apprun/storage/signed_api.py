"""HTTP for signed links and rendered images under ``/storage/v1``, shaped as Supabase Storage's.

``POST /object/sign/{bucket}/{key}`` answers ``{"signedURL": "/object/sign/…?token=…"}``
(``/render/image/sign/…`` with a transform), relative to ``/storage/v1`` as
Supabase's clients join it; ``POST /object/sign/{bucket}`` with ``paths``
signs many. ``GET`` on the link serves the object to anyone holding it, as
the authenticated download does (Range, ETag/304, ``?download=``).
``POST /object/upload/sign/{bucket}/{key}`` answers ``{"url", "token"}``
and ``PUT`` on that link uploads, streamed as a normal upload. The
``/render/image/{authenticated,public}/…`` routes render an object with the
transform in the query (`apprun.storage.images`). The links' rules are in
`apprun.storage.signing`; the render cache in `apprun.storage.render`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream

from apprun.kernel.http import SKIP_COMPRESSION, CtxDep
from apprun.storage.deps import SignedDep
from apprun.storage.downloads import download_reply
from apprun.storage.images import parse_transform
from apprun.storage.service import Download
from apprun.storage.signing import SignedUrls, expiry_seconds
from apprun.storage.upload_body import upload_body

__all__ = ["render_routes", "signed_routes"]

_BYTES = {SKIP_COMPRESSION: True}


class SignBody(msgspec.Struct):
    #: storage3 sends it as text ("60"), supabase-js as a number: `expiry_seconds` reads either, or answers 400.
    expiresIn: Any
    transform: dict[str, Any] | None = None
    #: storage3 sends it too, and adds ``?download=`` to the link itself: the link does not carry it.
    download: str | bool | None = None


class SignManyBody(msgspec.Struct):
    expiresIn: Any
    paths: list[str]
    download: str | bool | None = None


def _key(path: str) -> str:
    # Litestar's ``path`` parameter keeps the slash that separates it from the bucket.
    return path[1:] if path.startswith("/") else path


# --- signed downloads -----------------------------------------------------------------------------


@post("/object/sign/{bucket_id:str}/{path:path}", status_code=200, summary="A signed link to download an object")
async def sign_object(
    ctx: CtxDep, signed: SignedDep, bucket_id: FromPath[str], path: FromPath[str], data: JSONBody[SignBody]
) -> dict[str, Any]:
    transform = parse_transform(data.transform) if data.transform else None
    url = await signed.sign_download(ctx, bucket_id, _key(path), expiry_seconds(data.expiresIn), transform)
    return {"signedURL": url}


@post("/object/sign/{bucket_id:str}", status_code=200, summary="Signed links to download several objects")
async def sign_objects(
    ctx: CtxDep, signed: SignedDep, bucket_id: FromPath[str], data: JSONBody[SignManyBody]
) -> list[dict[str, Any]]:
    return await signed.sign_downloads(ctx, bucket_id, data.paths, expiry_seconds(data.expiresIn))


async def _signed_download(
    ctx: CtxDep, signed: SignedDep, request: Request[Any, Any, Any], *, bucket_id: str, path: str, token: str
) -> Response[bytes] | Stream:
    grant = signed.grant(token, "GET", bucket_id, _key(path))
    found = await signed.open(ctx, grant)
    return download_reply(signed.storage, found, request.headers, request.query_params.get("download"))


@get("/object/sign/{bucket_id:str}/{path:path}", opt=_BYTES, summary="Download through a signed link")
async def signed_download(
    ctx: CtxDep,
    signed: SignedDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
    token: FromQuery[str],
) -> Response[bytes] | Stream:
    return await _signed_download(ctx, signed, request, bucket_id=bucket_id, path=path, token=token)


@get("/render/image/sign/{bucket_id:str}/{path:path}", opt=_BYTES, summary="A rendered image through a signed link")
async def signed_render(
    ctx: CtxDep,
    signed: SignedDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
    token: FromQuery[str],
) -> Response[bytes] | Stream:
    # The transform is the one signed into the token; the query's width/height/… are not read.
    return await _signed_download(ctx, signed, request, bucket_id=bucket_id, path=path, token=token)


# --- signed uploads -------------------------------------------------------------------------------


@post("/object/upload/sign/{bucket_id:str}/{path:path}", status_code=200, summary="A signed link to upload an object")
async def sign_upload(
    ctx: CtxDep, signed: SignedDep, request: Request[Any, Any, Any], bucket_id: FromPath[str], path: FromPath[str]
) -> dict[str, Any]:
    upsert = request.headers.get("x-upsert", "false").lower() == "true"
    url, token = await signed.sign_upload(ctx, bucket_id, _key(path), upsert=upsert)
    return {"url": url, "token": token}


# No framework body limit, as api.py's uploads: the bytes are counted against the bucket's limit as they stream.
@put(
    "/object/upload/sign/{bucket_id:str}/{path:path}",
    request_max_body_size=None,
    summary="Upload through a signed link",
)
async def signed_upload(
    ctx: CtxDep,
    signed: SignedDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
    token: FromQuery[str],
) -> dict[str, Any]:
    # Checked before a byte is read: a refused link reads no body. x-upsert is the signed one, not the header.
    grant = signed.grant(token, "PUT", bucket_id, _key(path))
    body = upload_body(request.stream(), request.headers.get("content-type"), request.headers.get("cache-control"))
    await body.start()
    stored = await signed.upload(ctx, grant, body)
    return {"Key": f"{grant.bucket}/{stored.name}", "Id": stored.id}


# --- rendered images ------------------------------------------------------------------------------


@get("/render/image/authenticated/{bucket_id:str}/{path:path}", opt=_BYTES, summary="An image, rendered (signed in)")
async def render_authenticated(
    ctx: CtxDep,
    signed: SignedDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
) -> Response[bytes] | Stream:
    return await _rendered(signed, await signed.storage.open(ctx, bucket_id, _key(path)), request)


@get("/render/image/public/{bucket_id:str}/{path:path}", opt=_BYTES, summary="An image of a public bucket, rendered")
async def render_public(
    ctx: CtxDep,
    signed: SignedDep,
    *,
    request: Request[Any, Any, Any],
    bucket_id: FromPath[str],
    path: FromPath[str],
) -> Response[bytes] | Stream:
    return await _rendered(signed, await signed.storage.open_public(ctx, bucket_id, _key(path)), request)


async def _rendered(signed: SignedUrls, found: Download, request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """``found`` rendered as the query asks, served as a download of the (cached) derivative."""
    rendered = await signed.renditions.open(found, parse_transform(request.query_params))
    return download_reply(signed.storage, rendered, request.headers, request.query_params.get("download"))


def signed_routes() -> list[HTTPRouteHandler]:
    """The signed links' routes, for `apprun.storage.api.storage_router`."""
    return [sign_object, sign_objects, signed_download, signed_render, sign_upload, signed_upload]


def render_routes() -> list[HTTPRouteHandler]:
    """The image rendering routes, for `apprun.storage.api.storage_router`."""
    return [render_authenticated, render_public]
