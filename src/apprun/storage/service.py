"""Objects: upload, download, list, move, copy and remove the files in a tenant's buckets.

Who may do what is asked of RBAC in the request's active tenant, on the
object ``bucket:<name>``: ``read`` to download, list and read an object's
info, ``create`` to upload a new object or copy one, ``update`` to replace
one (``x-upsert``, PUT) or move one, ``delete`` to remove. A public bucket's
objects are readable by anyone through the public path. Another tenant's
bucket or object is not found (404), never forbidden.

Nothing lost, nothing orphaned: an upload streams its bytes to a staging
place in the backend, checking the bucket's size limit and MIME types as
they arrive; the metadata row and its ``apprun.object.*`` event then commit
together (the events outbox), and only after the commit are the bytes
published under the object's key. If the row does not commit, the staged
bytes are removed. Deletions remove the row (and write the event) first and
the bytes after the commit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from apprun.events.envelope import make_event
from apprun.events.outbox import emit
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UniqueViolation,
)
from apprun.kernel.ids import new_id
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow
from apprun.rbac.service import Rbac
from apprun.storage.backends.port import (
    GLOBAL_SCOPE,
    BackendError,
    KeyConflict,
    Location,
    Staged,
    StorageBackend,
)
from apprun.storage.buckets import Buckets, bucket_object, tenant_of
from apprun.storage.keys import object_key
from apprun.storage.listing import ListOptions, list_folder
from apprun.storage.mime import essence, mime_allowed
from apprun.storage.quota import QUOTA_EXCEEDED, Quota
from apprun.storage.rows import OBJECT_COLUMNS, Bucket, StoredObject, fetch_object, object_of, scope_sql

__all__ = ["CREATED", "DELETED", "UPDATED", "Download", "Storage", "Upload"]

CREATED = "apprun.object.created"
UPDATED = "apprun.object.updated"
DELETED = "apprun.object.deleted"
MAX_REMOVE = 1000
_DEFAULT_MIME = "application/octet-stream"

_log = get_logger("apprun.storage")


class Upload(Protocol):
    """An upload's body as the HTTP layer read it: the bytes stream once; the rest may be known only after."""

    @property
    def content_type(self) -> str | None: ...

    @property
    def cache_control(self) -> str | None: ...

    @property
    def metadata(self) -> dict[str, Any] | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True, slots=True)
class Download:
    """An object found and allowed: its row, its bucket, and where its bytes are."""

    object: StoredObject
    bucket: Bucket
    location: Location


class Storage:
    """The storage service: `Buckets` for the buckets, this for the objects in them."""

    def __init__(
        self, db: Database, rbac: Rbac, backend: StorageBackend, buckets: Buckets, quota: Quota | None = None
    ) -> None:
        self.db = db
        self.rbac = rbac
        self.backend = backend
        self.buckets = buckets
        self.quota = quota or Quota(db, 0)

    # --- uploads ------------------------------------------------------
    async def upload(
        self, ctx: RequestContext, bucket_id: str, key: str, body: Upload, *, upsert: bool, replace: bool = False
    ) -> StoredObject:
        """Store ``body`` as ``key`` in the bucket: new (409 if it exists, unless ``upsert``) or, with
        ``replace``, an existing object (404 if there is none)."""
        name = object_key(key)
        await self.rbac.require(ctx, "update" if replace else "create", bucket_object(bucket_id))
        if upsert and not replace:
            await self.rbac.require(ctx, "update", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        location = _location(bucket, name)
        # What a replacement frees counts towards the quota's room (checked again, exactly, at commit).
        freed = 0
        if (upsert or replace) and self.quota.limit:
            async with self.db.read() as conn:
                old = await fetch_object(conn, bucket.tenant_id, bucket.id, name)
            freed = old.size if old is not None else 0
        staged = await self._stage(location, bucket, body, freed=freed)
        try:
            stored, event = await self._commit_upload(ctx, bucket, name, staged, body, upsert=upsert, replace=replace)
        except BaseException:
            await self.backend.discard(staged)
            raise
        await self._publish(stored, staged, event)
        return stored

    async def _stage(self, location: Location, bucket: Bucket, body: Upload, *, freed: int = 0) -> Staged:
        limit = self.buckets.size_limit(bucket)
        refusal = PayloadTooLarge("storage.too_large", params={"limit": limit})
        room = await self.quota.room(bucket.tenant_id)
        if room is not None and room + freed < limit:  # the tenant's quota is the nearer bound
            used = self.quota.limit - room
            limit = room + freed
            refusal = PayloadTooLarge(QUOTA_EXCEEDED, params={"limit": self.quota.limit, "used": used})
        try:
            return await self.backend.put(location, _checked(body, bucket, limit, refusal))
        except KeyConflict as exc:
            raise Conflict("storage.key_conflict") from exc
        except BackendError as exc:
            raise ServiceUnavailable("storage.backend_unavailable") from exc

    async def _commit_upload(
        self,
        ctx: RequestContext,
        bucket: Bucket,
        name: str,
        staged: Staged,
        body: Upload,
        *,
        upsert: bool,
        replace: bool,
    ) -> tuple[StoredObject, str]:
        now = utcnow()
        metadata = body.metadata
        values = {
            "size": staged.size,
            "mime_type": (body.content_type or _DEFAULT_MIME).strip()[:255],
            "etag": staged.etag,
            "cache_control": (body.cache_control or None),
            "metadata": json.dumps(metadata) if metadata is not None else None,
        }
        for attempt in range(2):
            try:
                async with self.db.transaction() as conn:
                    old = await fetch_object(conn, bucket.tenant_id, bucket.id, name)
                    if old is not None and not (upsert or replace):
                        raise Conflict("storage.object_exists", params={"name": name})
                    if old is None and replace:
                        raise NotFound("storage.object_not_found")
                    await self.quota.hold(conn, bucket.tenant_id, staged.size - (old.size if old else 0))
                    if old is None:
                        object_id = new_id()
                        await conn.execute(
                            "INSERT INTO apprun_storage_objects (id, tenant_id, bucket_id, name, size, mime_type, "
                            "etag, cache_control, metadata, owner, created_at, updated_at, last_accessed_at) "
                            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11)",
                            object_id, bucket.tenant_id, bucket.id, name, values["size"], values["mime_type"],
                            values["etag"], values["cache_control"], values["metadata"], ctx.user_id, now,
                        )  # fmt: skip
                    else:
                        object_id = old.id
                        await conn.execute(
                            "UPDATE apprun_storage_objects SET size = $1, mime_type = $2, etag = $3, "
                            "cache_control = $4, metadata = $5, owner = $6, updated_at = $7, last_accessed_at = $7 "
                            "WHERE id = $8",
                            values["size"], values["mime_type"], values["etag"], values["cache_control"],
                            values["metadata"], ctx.user_id, now, object_id,
                        )  # fmt: skip
                    stored = await fetch_object(conn, bucket.tenant_id, bucket.id, name)
                    assert stored is not None  # noqa: S101 - written just above, in this transaction
                    event = CREATED if old is None else UPDATED
                    await _emit(conn, event, stored)
                return stored, event
            except UniqueViolation as exc:
                # A concurrent upload of the same key committed first: an upsert replaces it (once more).
                if not upsert or attempt:
                    raise Conflict("storage.object_exists", params={"name": name}) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _publish(self, stored: StoredObject, staged: Staged, event: str) -> None:
        try:
            await self.backend.publish(staged)
        except BackendError as exc:
            # The row committed but its bytes cannot be placed: take the row back, so no row is left without bytes.
            _log.error("storage_publish_failed", bucket=stored.bucket_id, error=str(exc))
            async with self.db.transaction() as conn:
                if event == CREATED:
                    await conn.execute("DELETE FROM apprun_storage_objects WHERE id = $1", stored.id)
                    await _emit(conn, DELETED, stored)
            if isinstance(exc, KeyConflict):
                raise Conflict("storage.key_conflict") from exc
            raise ServiceUnavailable("storage.backend_unavailable") from exc

    async def ensure_default_bucket(self, ctx: RequestContext, bucket_id: str) -> None:
        """The seed upload's bucket: made private on first use by whoever may upload to it."""
        await self.rbac.require(ctx, "create", bucket_object(bucket_id))
        tenant = tenant_of(ctx)
        try:
            await self.buckets.find(tenant, bucket_id)
        except NotFound:
            await self.buckets.insert(tenant, bucket_id, owner=ctx.user_id)

    # --- reads --------------------------------------------------------
    async def open(self, ctx: RequestContext, bucket_id: str, key: str) -> Download:
        """An object the caller may read in their active tenant."""
        name = object_key(key)
        await self.rbac.require(ctx, "read", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        return await self._found(bucket, name)

    async def open_public(self, ctx: RequestContext, bucket_id: str, key: str) -> Download:
        """An object of a public bucket, for anyone: the bucket is the caller's tenant's (active, or named
        by ``X-Tenant-Id`` when anonymous), else the global one of that name."""
        name = object_key(key)
        tenant = ctx.tenant_id if ctx.is_authenticated else ctx.requested_tenant
        if tenant == "":
            raise BadRequest("storage.invalid_tenant_header")
        try:
            bucket = await self.buckets.find(tenant, bucket_id)
        except NotFound:
            if tenant is None:
                raise
            bucket = await self.buckets.find(None, bucket_id)
        if not bucket.public:
            # Not "forbidden": a private bucket's name is not confirmed to whoever asks.
            raise NotFound("storage.bucket_not_found", params={"bucket": bucket_id})
        return await self._found(bucket, name)

    async def info(self, ctx: RequestContext, bucket_id: str, key: str) -> dict[str, Any]:
        return (await self.open(ctx, bucket_id, key)).object.info_view()

    async def list_objects(self, ctx: RequestContext, bucket_id: str, options: ListOptions) -> list[dict[str, Any]]:
        await self.rbac.require(ctx, "read", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        async with self.db.read() as conn:
            return await list_folder(conn, bucket, options)

    async def _found(self, bucket: Bucket, name: str) -> Download:
        async with self.db.read() as conn:
            stored = await fetch_object(conn, bucket.tenant_id, bucket.id, name)
        if stored is None:
            raise NotFound("storage.object_not_found")
        return Download(stored, bucket, _location(bucket, name))

    # --- copies and moves ---------------------------------------------
    async def copy(self, ctx: RequestContext, bucket_id: str, source: str, target: str) -> StoredObject:
        src, dst = object_key(source), object_key(target)
        await self.rbac.require(ctx, "read", bucket_object(bucket_id))
        await self.rbac.require(ctx, "create", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        original = (await self._found(bucket, src)).object
        staged = await self._backend_copy(_location(bucket, src), _location(bucket, dst))
        try:
            async with self.db.transaction() as conn:
                if await fetch_object(conn, bucket.tenant_id, bucket.id, dst) is not None:
                    raise Conflict("storage.object_exists", params={"name": dst})
                await self.quota.hold(conn, bucket.tenant_id, staged.size)
                now = utcnow()
                await conn.execute(
                    "INSERT INTO apprun_storage_objects (id, tenant_id, bucket_id, name, size, mime_type, etag, "
                    "cache_control, metadata, owner, created_at, updated_at, last_accessed_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11)",
                    new_id(), bucket.tenant_id, bucket.id, dst, staged.size, original.mime_type, staged.etag,
                    original.cache_control, _json(original.metadata), ctx.user_id, now,
                )  # fmt: skip
                stored = await fetch_object(conn, bucket.tenant_id, bucket.id, dst)
                assert stored is not None  # noqa: S101 - written just above, in this transaction
                await _emit(conn, CREATED, stored)
        except BaseException:
            await self.backend.discard(staged)
            raise
        await self._publish(stored, staged, CREATED)
        return stored

    async def move(self, ctx: RequestContext, bucket_id: str, source: str, target: str) -> None:
        src, dst = object_key(source), object_key(target)
        await self.rbac.require(ctx, "update", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        await self._found(bucket, src)
        staged = await self._backend_copy(_location(bucket, src), _location(bucket, dst))
        try:
            async with self.db.transaction() as conn:
                moved = await fetch_object(conn, bucket.tenant_id, bucket.id, src)
                if moved is None:
                    raise NotFound("storage.object_not_found")
                if await fetch_object(conn, bucket.tenant_id, bucket.id, dst) is not None:
                    raise Conflict("storage.object_exists", params={"name": dst})
                await self.quota.hold(conn, bucket.tenant_id, staged.size)
                await conn.execute(
                    "UPDATE apprun_storage_objects SET name = $1, updated_at = $2 WHERE id = $3",
                    dst,
                    utcnow(),
                    moved.id,
                )
                await _emit(conn, DELETED, moved)
                stored = await fetch_object(conn, bucket.tenant_id, bucket.id, dst)
                assert stored is not None  # noqa: S101 - renamed just above, in this transaction
                await _emit(conn, CREATED, stored)
        except BaseException:
            await self.backend.discard(staged)
            raise
        await self._publish(stored, staged, CREATED)
        await self._delete_bytes([_location(bucket, src)])

    async def _backend_copy(self, source: Location, target: Location) -> Staged:
        try:
            return await self.backend.copy(source, target)
        except FileNotFoundError as exc:
            raise NotFound("storage.object_not_found") from exc
        except (BackendError, OSError) as exc:
            raise ServiceUnavailable("storage.backend_unavailable") from exc

    # --- removals -----------------------------------------------------
    async def remove(self, ctx: RequestContext, bucket_id: str, keys: list[str]) -> list[dict[str, Any]]:
        """Remove the objects named ``keys`` (missing ones are skipped, as in Supabase); the removed ones."""
        if len(keys) > MAX_REMOVE:
            raise BadRequest("storage.too_many_keys", params={"max": MAX_REMOVE})
        names = sorted({object_key(key) for key in keys})
        await self.rbac.require(ctx, "delete", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        removed: list[StoredObject] = []
        async with self.db.transaction() as conn:
            for name in names:
                stored = await fetch_object(conn, bucket.tenant_id, bucket.id, name)
                if stored is not None:
                    await conn.execute("DELETE FROM apprun_storage_objects WHERE id = $1", stored.id)
                    await _emit(conn, DELETED, stored)
                    removed.append(stored)
        await self._delete_bytes([_location(bucket, o.name) for o in removed])
        return [o.list_view() | {"bucket_id": o.bucket_id} for o in removed]

    async def empty(self, ctx: RequestContext, bucket_id: str) -> dict[str, Any]:
        """Remove every object of the bucket, each with its event."""
        await self.rbac.require(ctx, "delete", bucket_object(bucket_id))
        bucket = await self.buckets.find(tenant_of(ctx), bucket_id)
        where, args = scope_sql(bucket.tenant_id, 2)
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                f"SELECT {OBJECT_COLUMNS} FROM apprun_storage_objects WHERE bucket_id = $1 AND {where}",  # noqa: S608
                bucket.id,
                *args,
            )
            removed = [object_of(row) for row in rows]
            await conn.execute(
                f"DELETE FROM apprun_storage_objects WHERE bucket_id = $1 AND {where}",  # noqa: S608
                bucket.id,
                *args,
            )
            for stored in removed:
                await _emit(conn, DELETED, stored)
        await self._delete_bytes([_location(bucket, o.name) for o in removed])
        return {"message": "Successfully emptied"}

    async def _delete_bytes(self, locations: list[Location]) -> None:
        for location in locations:
            try:
                await self.backend.delete(location)
            except (BackendError, OSError) as exc:
                # The rows are gone; bytes left behind are the sweeper's (issue 13, part 2), not the client's error.
                _log.warning("storage_delete_failed", bucket=location.bucket, error=str(exc))


def _location(bucket: Bucket, name: str) -> Location:
    return Location(bucket.tenant_id or GLOBAL_SCOPE, bucket.id, name)


async def _emit(conn: Connection, event_type: str, stored: StoredObject) -> None:
    subject = f"objects/{stored.id}"
    await emit(conn, make_event(event_type, tenant_id=stored.tenant_id, subject=subject, data=stored.event_data()))


def _json(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value) if value is not None else None


async def _checked(body: Upload, bucket: Bucket, limit: int, refusal: PayloadTooLarge) -> AsyncIterator[bytes]:
    """``body``'s bytes, refused as they arrive: a MIME type the bucket does not take before the first byte
    is stored, and the byte past the size limit before it is written (413, the staged bytes removed)."""
    checked = False
    size = 0
    async for chunk in body.chunks():
        if not checked:
            _check_type(body.content_type, bucket)
            checked = True
        size += len(chunk)
        if size > limit:
            raise refusal
        yield chunk
    if not checked:
        _check_type(body.content_type, bucket)


def _check_type(content_type: str | None, bucket: Bucket) -> None:
    if bucket.allowed_mime_types is None:
        return
    if not mime_allowed(essence(content_type or _DEFAULT_MIME), bucket.allowed_mime_types):
        # 400, not Supabase's 415: the security checklist (item 21) asks for 400/413.
        raise BadRequest(
            "storage.mime_type_not_allowed",
            params={"type": essence(content_type or _DEFAULT_MIME)},
            details={"allowed": list(bucket.allowed_mime_types)},
        )
