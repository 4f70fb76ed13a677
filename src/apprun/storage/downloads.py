"""A found object as an HTTP reply: streamed bytes, or 304, with the headers a download needs.

Shared by the Supabase-compatible routes and the seed's download route.
The bytes stream from the backend a chunk at a time; the reply carries the
object's ETag (quoted MD5), answers ``If-None-Match`` with 304 and one
``Range`` with 206 (416 when it selects nothing), names the file for
``?download=`` with a header that cannot be broken out of, and sets
``Cache-Control`` from the object (``private`` for a private bucket's, so a
shared cache never keeps what needed a token). An uploaded HTML or SVG
file opened from apprun's origin runs no script there: the kernel's
security headers give every reply ``Content-Security-Policy: default-src
'none'`` and ``nosniff``.
"""

from __future__ import annotations

from typing import Any

from litestar import Response
from litestar.response import Stream

from apprun.kernel.errors import ApiError
from apprun.storage.ranges import NOT_SATISFIABLE, byte_range, content_disposition, etag_matches
from apprun.storage.service import Download, Storage

__all__ = ["download_reply"]


def download_reply(storage: Storage, found: Download, headers: Any, download: str | None) -> Response[bytes] | Stream:
    """The reply to a GET of ``found``; ``headers`` are the request's, ``download`` the query's value."""
    stored = found.object
    cache = stored.cache_control_header if found.bucket.public else f"private, {stored.cache_control_header}"
    reply_headers = {
        "ETag": f'"{stored.etag}"',
        "Cache-Control": cache,
        "Last-Modified": stored.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Accept-Ranges": "bytes",
    }
    if download is not None:
        reply_headers["Content-Disposition"] = content_disposition(download, stored.name)
    if etag_matches(headers.get("if-none-match"), stored.etag):
        return Response(content=b"", status_code=304, headers=reply_headers)
    wanted = byte_range(headers.get("range"), stored.size)
    if wanted == NOT_SATISFIABLE:
        raise ApiError(
            "storage.range_not_satisfiable",
            status=416,
            params={"size": stored.size},
            headers={"Content-Range": f"bytes */{stored.size}"},
        )
    if wanted is None:
        # The last byte named, not left open: a stream that ends with it is whole (the metrics tell a
        # download the server closed after its last byte from one the client left).
        start, end, status = 0, (stored.size - 1 if stored.size else None), 200
        # The stored type as uploaded: Litestar would add "; charset=utf-8" to a text/* type it is given.
        reply_headers["Content-Type"] = stored.mime_type
        reply_headers["Content-Length"] = str(stored.size)
    else:
        start, end, status = wanted[0], wanted[1], 206
        reply_headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        reply_headers["Content-Length"] = str(end - start + 1)
        reply_headers["Content-Type"] = stored.mime_type
    return Stream(
        storage.backend.get(found.location, start, end),
        status_code=status,
        media_type=stored.mime_type,
        headers=reply_headers,
    )
