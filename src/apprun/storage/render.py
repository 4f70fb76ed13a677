"""Rendered images, cached: a derivative is made once per object version and transform, then streamed.

A derivative lives in the backend beside the objects of its tenant, under
the bucket name `RENDER_BUCKET` (``.render``), which no user bucket can have
(a bucket's name starts with a letter or a digit), at
``<bucket>/<source etag>/<transform key>/<object key>``. The ETag is the
source's MD5, so a changed object (a new ETag) renders anew and an old
derivative is never served for it; the transform's key holds the resolved
output format, so the derivative's type is known without decoding it. A
cached derivative is a plain download: `Range`, ETag/304 and
``Content-Disposition`` work as for the object itself.

Derivatives are not removed with their object: the backend port has no
listing, so they are the sweeper's (issue 13, part 2) to remove by their
source's row being gone or changed. Until then they are unreachable: a
derivative is found only through its object's current row (and its rights),
and by that row's ETag.

Rendering decodes the whole source in a thread; at most `RENDERS_AT_ONCE`
run at a time per process, so a burst of thumbnails cannot take every core.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from apprun.kernel.errors import BadRequest, ServiceUnavailable
from apprun.storage.backends.port import BackendError, Location, StorageBackend
from apprun.storage.images import FORMATS, MAX_SOURCE_BYTES, MAX_SOURCE_PIXELS, Transform, output_format, render
from apprun.storage.mime import essence
from apprun.storage.service import Download

__all__ = ["RENDERS_AT_ONCE", "RENDER_BUCKET", "Renditions"]

RENDER_BUCKET = ".render"
RENDERS_AT_ONCE = 2


class Renditions:
    """The derivative cache over a backend."""

    def __init__(self, backend: StorageBackend, *, at_once: int = RENDERS_AT_ONCE) -> None:
        self.backend = backend
        self._slots = asyncio.Semaphore(at_once)

    async def open(self, found: Download, transform: Transform) -> Download:
        """``found`` rendered as ``transform`` says, as a download of its own (rendered now if not cached)."""
        stored = found.object
        if stored.size > MAX_SOURCE_BYTES:
            raise BadRequest("storage.image_too_large", params={"bytes": MAX_SOURCE_BYTES, "pixels": MAX_SOURCE_PIXELS})
        name = output_format(transform, essence(stored.mime_type))
        resolved = dataclasses.replace(transform, format=name)  # type: ignore[arg-type]
        location = Location(
            found.location.scope, RENDER_BUCKET, f"{stored.bucket_id}/{stored.etag}/{resolved.key()}/{stored.name}"
        )
        try:
            stat = await self.backend.head(location)
            size = stat.size if stat is not None else await self._render(found, resolved, location)
        except BackendError as exc:
            raise ServiceUnavailable("storage.backend_unavailable") from exc
        derived = dataclasses.replace(
            stored, size=size, mime_type=FORMATS[name][1], etag=f"{stored.etag}-{resolved.key()}"
        )
        return Download(derived, found.bucket, location)

    async def _render(self, found: Download, transform: Transform, location: Location) -> int:
        source = b"".join([chunk async for chunk in self.backend.get(found.location)])
        async with self._slots:
            rendered, _ = await asyncio.to_thread(render, source, transform)
        # Two requests rendering the same derivative at once both publish it: the same bytes, replaced atomically.
        staged = await self.backend.put(location, _once(rendered))
        await self.backend.publish(staged)
        return len(rendered)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
