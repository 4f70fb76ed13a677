"""Resumable uploads under way (TUS): their state, their staged bytes, their completion and their cleanup.

An upload is a row of ``apprun_storage_uploads`` (where its object goes, its
length, how many bytes arrived) and a staging file,
``STORAGE_DIR/.uploads/<id>``, on the local data dir whatever the backend:
both survive an apprun restart, so a client resumes at the offset ``HEAD``
gives it. A ``PATCH`` writes its bytes at the stored offset and raises the
stored offset only after they are fsynced (every `PERSIST_EVERY` bytes and
when the body ends or breaks off), so a dropped connection or a killed
server keeps what was durably written, and bytes past the stored offset are
simply written again. An exclusive ``flock`` on the staging file keeps two
``PATCH``\\es of one upload (in any worker process) from interleaving.

When the offset reaches the length, the staging file is handed to
`Storage.upload` as the upload's body, so the object is committed exactly as
a one-request upload is (rbac, the bucket's limit and MIME types, the row and
its ``apprun.object.created`` event in one transaction, the bytes published
after the commit). That writes the bytes a second time (staging file ->
backend's staging -> object): the price of one commit path for every upload.
Native S3 multipart uploads would avoid it on the S3 backend; obstore 0.12.1
lacks the multipart calls (benchmarks/RESULTS.md), so that is a later step.

Every request re-checks the caller: the upload must be in their active tenant
(another tenant's id is 404, never 403) and rbac must allow ``create`` on
``bucket:<name>`` (and ``update`` for an ``x-upsert`` upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from apprun.kernel.context import RequestContext
from apprun.kernel.db import Row
from apprun.kernel.errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge
from apprun.kernel.ids import canonical_uuid, new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import to_datetime, utcnow
from apprun.storage.buckets import bucket_object, tenant_of
from apprun.storage.keys import bucket_name, object_key
from apprun.storage.mime import essence, mime_allowed
from apprun.storage.rows import Bucket, StoredObject, fetch_object
from apprun.storage.service import Storage
from apprun.storage.tus import UploadExpired, UploadMetadata

__all__ = ["PERSIST_EVERY", "UPLOADS_DIR", "UploadState", "Uploads"]

#: The staging files' directory under ``STORAGE_DIR``.
UPLOADS_DIR = ".uploads"
#: Bytes written between two durable checkpoints (fsync, then the offset's UPDATE): a dropped connection
#: loses at most this much, and a 50 MiB upload costs 50 small writes of its row, not one per ASGI chunk.
PERSIST_EVERY = 1024 * 1024
_READ_CHUNK = 256 * 1024
_DEFAULT_MIME = "application/octet-stream"
_COLUMNS = (
    "id, tenant_id, bucket, key, upload_length, upload_offset, metadata, upsert, content_type, cache_control, "
    "created_by, expires_at, created_at"
)

_log = get_logger("apprun.storage")


class UploadLocked(ApiError):
    """423: another request is writing this upload's bytes right now."""

    status = 423
    default_code = "storage.upload_locked"


@dataclass(frozen=True, slots=True)
class UploadState:
    id: str
    tenant_id: str
    bucket: str
    key: str
    length: int
    offset: int
    metadata: dict[str, Any] | None
    upsert: bool
    content_type: str | None
    cache_control: str | None
    created_by: str | None
    expires_at: dt.datetime
    created_at: dt.datetime

    @property
    def done(self) -> bool:
        return self.offset >= self.length


def _state_of(row: Row) -> UploadState:
    raw = row["metadata"]
    expires, created = to_datetime(row["expires_at"]), to_datetime(row["created_at"])
    assert expires is not None, "expires_at is NOT NULL"  # noqa: S101
    assert created is not None, "created_at is NOT NULL"  # noqa: S101
    return UploadState(
        id=row["id"],
        tenant_id=row["tenant_id"],
        bucket=row["bucket"],
        key=row["key"],
        length=int(row["upload_length"]),
        offset=int(row["upload_offset"]),
        metadata=json.loads(raw) if raw is not None else None,
        upsert=bool(row["upsert"]),
        content_type=row["content_type"],
        cache_control=row["cache_control"],
        created_by=row["created_by"],
        expires_at=expires,
        created_at=created,
    )


class _StagedBody:
    """The staging file as `Storage.upload`'s body (`apprun.storage.service.Upload`)."""

    def __init__(self, path: Path, state: UploadState) -> None:
        self._path = path
        self._length = state.length
        self.content_type = state.content_type
        self.cache_control = state.cache_control
        self.metadata = state.metadata

    async def chunks(self) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path, "rb")
        try:
            left = self._length
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(_READ_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)


class Uploads:
    """TUS uploads' state and bytes; completed uploads go through `Storage.upload`."""

    def __init__(self, storage: Storage, root: Path, *, expiry: dt.timedelta) -> None:
        self.storage = storage
        self.db = storage.db
        self.directory = root / UPLOADS_DIR
        self.expiry = expiry

    @property
    def max_size(self) -> int:
        return self.storage.buckets.max_file_size

    # --- creation -----------------------------------------------------
    async def create(
        self, ctx: RequestContext, meta: UploadMetadata, length: int, *, upsert: bool
    ) -> tuple[UploadState, StoredObject | None]:
        """A new upload of ``length`` bytes to the place ``meta`` names; checked now as its completion
        will be (rbac, bucket, key, size limit, MIME type, an existing object without ``x-upsert``).
        An empty upload is complete at once: its object is returned too."""
        bucket_id, key = _required(meta, "bucketName"), _required(meta, "objectName")
        bucket_name(bucket_id)
        name = object_key(key)
        content_type = meta.get("contentType") or None
        metadata = _metadata(meta.get("metadata"))
        await self._authorize(ctx, bucket_id, upsert=upsert)
        bucket = await self.storage.buckets.find(tenant_of(ctx), bucket_id)
        self._check_bucket(bucket, length, content_type)
        if not upsert:
            async with self.db.read() as conn:
                if await fetch_object(conn, bucket.tenant_id, bucket.id, name) is not None:
                    raise Conflict("storage.object_exists", params={"name": name})
        upload_id, now = new_id(), utcnow()
        # The file before the row: a crash between them leaves a file without a row, which the cleanup
        # pass removes by age; never a row whose bytes have nowhere to go.
        await asyncio.to_thread(_create_file, self.directory, upload_id)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    f"INSERT INTO apprun_storage_uploads ({_COLUMNS}) "  # noqa: S608 - fixed text
                    "VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11, $12)",
                    upload_id, bucket.tenant_id, bucket.id, name, length,
                    json.dumps(metadata) if metadata is not None else None, upsert,
                    (content_type or "").strip()[:255] or None, (meta.get("cacheControl") or "").strip()[:255] or None,
                    ctx.user_id, now + self.expiry, now,
                )  # fmt: skip
        except BaseException:
            await asyncio.to_thread(_unlink, self.directory / upload_id)
            raise
        state = await self._load(upload_id, bucket.tenant_id)
        if length == 0:
            return state, await self._complete(ctx, state)
        return state, None

    # --- lookups ------------------------------------------------------
    async def find(self, ctx: RequestContext, upload_id: str, *, allow_expired: bool = False) -> UploadState:
        """The caller's upload: in their active tenant (else 404), allowed by rbac, not expired (410)."""
        tenant = tenant_of(ctx)
        if canonical_uuid(upload_id) != upload_id:
            raise NotFound("storage.upload_not_found")
        state = await self._load(upload_id, tenant)
        await self._authorize(ctx, state.bucket, upsert=state.upsert)
        if not allow_expired and state.expires_at <= utcnow():
            raise UploadExpired()
        return state

    async def _load(self, upload_id: str, tenant_id: str | None) -> UploadState:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM apprun_storage_uploads WHERE id = $1 AND tenant_id = $2",  # noqa: S608
                upload_id,
                tenant_id,
            )
        if row is None:
            raise NotFound("storage.upload_not_found")
        return _state_of(row)

    # --- bytes --------------------------------------------------------
    async def append(
        self,
        ctx: RequestContext,
        state: UploadState,
        offset: int,
        chunks: AsyncIterator[bytes],
        declared: int | None = None,
    ) -> tuple[UploadState, StoredObject | None]:
        """Write ``chunks`` at ``offset`` (which must be the stored one: 409 otherwise); the state after,
        and the object when this completed the upload."""
        if declared is not None and offset + declared > state.length:
            raise PayloadTooLarge("storage.tus_past_length", params={"length": state.length})
        bucket = await self.storage.buckets.find(state.tenant_id, state.bucket)
        # The bucket may have changed since the creation: its limit and types apply to every byte.
        self._check_bucket(bucket, state.length, state.content_type)
        with self._locked(state.id) as handle:
            # Read under the lock: a PATCH that just finished in another worker has moved the offset.
            state = await self._load(state.id, state.tenant_id)
            if offset != state.offset:
                raise Conflict("storage.tus_offset", params={"offset": state.offset}, details={"offset": state.offset})
            state = await self._write(state, handle, chunks)
            if state.done:
                return state, await self._complete(ctx, state)
        return state, None

    async def _write(self, state: UploadState, handle: BinaryIO, chunks: AsyncIterator[bytes]) -> UploadState:
        written = state.offset  # bytes in the file, counted from its start
        durable = state.offset  # bytes fsynced and recorded in the row
        await asyncio.to_thread(handle.seek, written)
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if written + len(chunk) > state.length:
                    raise PayloadTooLarge("storage.tus_past_length", params={"length": state.length})
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
                if written - durable >= PERSIST_EVERY:
                    await asyncio.to_thread(_sync, handle)
                    await self._record(state.id, durable, written)
                    durable = written
        finally:
            if written > durable:
                # What arrived before the body ended or broke off is kept. The fsync runs here, not in a
                # thread, so it is done before the caller closes the file even if this task is cancelled
                # (at most PERSIST_EVERY bytes); the row's UPDATE is shielded from the cancellation.
                _sync(handle)
                await asyncio.shield(self._record(state.id, durable, written))
        return UploadState(**{**_fields(state), "offset": written})

    async def _record(self, upload_id: str, before: int, after: int) -> None:
        """The stored offset raised to ``after``: only once those bytes are fsynced."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE apprun_storage_uploads SET upload_offset = $1 WHERE id = $2 AND upload_offset = $3",
                after,
                upload_id,
                before,
            )

    async def _complete(self, ctx: RequestContext, state: UploadState) -> StoredObject:
        """The staging file committed as the object, through the service's one upload path."""
        path = self.directory / state.id
        try:
            stored = await self.storage.upload(
                ctx, state.bucket, state.key, _StagedBody(path, state), upsert=state.upsert
            )
        except ApiError as exc:
            if exc.status < 500:
                # Refused for good (the key was taken meanwhile, the bucket changed): retrying cannot help.
                await self._drop(state.id)
            # A 5xx keeps the upload: a PATCH at the full offset with no body tries the commit again.
            raise
        await self._drop(state.id)
        return stored

    # --- termination and cleanup --------------------------------------
    async def terminate(self, ctx: RequestContext, upload_id: str) -> None:
        state = await self.find(ctx, upload_id, allow_expired=True)
        with self._locked(state.id):
            await self._drop(state.id)

    async def _drop(self, upload_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM apprun_storage_uploads WHERE id = $1", upload_id)
        await asyncio.to_thread(_unlink, self.directory / upload_id)

    async def sweep(self, now: dt.datetime | None = None) -> int:
        """Remove expired uploads (row and bytes) and staging files older than the expiry with no row
        (a crash between a file's creation and its row's); the number of uploads removed."""
        now = now or utcnow()
        async with self.db.read() as conn:
            rows = await conn.fetch("SELECT id FROM apprun_storage_uploads WHERE expires_at <= $1", now)
        removed = 0
        for row in rows:
            async with self.db.transaction() as conn:
                gone = await conn.execute(
                    "DELETE FROM apprun_storage_uploads WHERE id = $1 AND expires_at <= $2", row["id"], now
                )
            await asyncio.to_thread(_unlink, self.directory / row["id"])
            removed += gone
        removed += await self._sweep_orphans(now)
        return removed

    async def _sweep_orphans(self, now: dt.datetime) -> int:
        cutoff = (now - self.expiry).timestamp()
        names = await asyncio.to_thread(_old_files, self.directory, cutoff)
        # Rare (a crash between a file's creation and its row's), so one lookup each is cheap enough.
        orphans = []
        for name in names:
            async with self.db.read() as conn:
                if await conn.fetchval("SELECT count(*) FROM apprun_storage_uploads WHERE id = $1", name) == 0:
                    orphans.append(name)
        for name in orphans:
            await asyncio.to_thread(_unlink, self.directory / name)
        return len(orphans)

    async def run_sweeper(self, interval: float) -> None:
        """`sweep` every ``interval`` seconds, for the module's lifetime (each worker runs one: idempotent)."""
        while True:
            try:
                swept = await self.sweep()
                if swept:
                    _log.info("storage_uploads_swept", count=swept)
            except (ApiError, OSError) as exc:
                _log.warning("storage_uploads_sweep_failed", error=str(exc))
            await asyncio.sleep(interval)

    # --- checks -------------------------------------------------------
    async def _authorize(self, ctx: RequestContext, bucket_id: str, *, upsert: bool) -> None:
        await self.storage.rbac.require(ctx, "create", bucket_object(bucket_id))
        if upsert:
            await self.storage.rbac.require(ctx, "update", bucket_object(bucket_id))

    def _check_bucket(self, bucket: Bucket, length: int, content_type: str | None) -> None:
        limit = self.storage.buckets.size_limit(bucket)
        if length > limit:
            raise PayloadTooLarge("storage.too_large", params={"limit": limit})
        mime = essence(content_type or _DEFAULT_MIME)
        if bucket.allowed_mime_types is not None and not mime_allowed(mime, bucket.allowed_mime_types):
            # 400 as a one-request upload answers (docs/storage.md, differences from Supabase).
            raise BadRequest(
                "storage.mime_type_not_allowed",
                params={"type": mime},
                details={"allowed": list(bucket.allowed_mime_types)},
            )

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[BinaryIO]:
        """The staging file, open for writing under an exclusive lock (423 while another request holds it)."""
        try:
            handle = open(self.directory / upload_id, "r+b")  # noqa: SIM115 - closed below; a local open() is quick
        except FileNotFoundError:
            raise NotFound("storage.upload_not_found") from None
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadLocked() from None
            yield handle
        finally:
            handle.close()  # closing releases the lock


def _required(meta: UploadMetadata, name: str) -> str:
    value = meta.get(name)
    if not value:
        raise BadRequest("storage.tus_metadata", params={"name": name})
    return value


def _metadata(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("storage.invalid_metadata") from exc
    if not isinstance(value, dict):
        raise BadRequest("storage.invalid_metadata")
    return value


def _fields(state: UploadState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in UploadState.__slots__}


def _create_file(directory: Path, upload_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / upload_id).touch(exist_ok=False)


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _old_files(directory: Path, cutoff: float) -> list[str]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return [e.name for e in entries if e.is_file() and e.stat().st_mtime < cutoff]
