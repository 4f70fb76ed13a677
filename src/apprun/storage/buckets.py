"""Buckets: create, list, read, change, empty and delete a tenant's buckets.

Who may do what is asked of RBAC in the request's active tenant, on the
object ``bucket:<name>``: ``read`` to see a bucket, ``admin`` to create,
change or delete one (a tenant's owners and admins: members and viewers only
read and write objects), ``delete`` to empty one. Another tenant's bucket is
not found (404), never forbidden, so names cannot be probed. Private by
default, as in Supabase Storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import BadRequest, Conflict, NotFound, Unauthorized, UniqueViolation
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.rbac.service import Rbac
from apprun.storage.keys import bucket_name
from apprun.storage.rows import BUCKET_COLUMNS, Bucket, bucket_of, scope_sql

__all__ = ["MAX_MIME_TYPES", "BucketOptions", "Buckets", "bucket_object", "tenant_of"]

MAX_MIME_TYPES = 100
_MIME = "abcdefghijklmnopqrstuvwxyz0123456789!#$&^_.+-"


def bucket_object(name: str) -> str:
    """The RBAC object of a bucket."""
    return f"bucket:{name}"


def tenant_of(ctx: RequestContext) -> str:
    """The caller's active tenant: every bucket and object they name is looked up there."""
    if not ctx.is_authenticated and ctx.auth_method == "anonymous":
        raise Unauthorized()
    if ctx.tenant_id is None:
        raise BadRequest("tenancy.no_active_tenant")
    return ctx.tenant_id


@dataclass(frozen=True, slots=True)
class BucketOptions:
    """What a client may set on a bucket; None leaves a field as it is (on update)."""

    public: bool | None = None
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None
    #: Set when the client sent ``file_size_limit``/``allowed_mime_types`` explicitly as null (clears it).
    clear_limit: bool = False
    clear_types: bool = False


class Buckets:
    def __init__(self, db: Database, rbac: Rbac, *, max_file_size: int) -> None:
        self.db = db
        self.rbac = rbac
        self.max_file_size = max_file_size

    async def list_buckets(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The active tenant's buckets the caller may read, by name."""
        tenant = tenant_of(ctx)
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT {BUCKET_COLUMNS} FROM apprun_storage_buckets WHERE tenant_id = $1 ORDER BY id",  # noqa: S608
                tenant,
            )
        shown = []
        for row in rows:
            bucket = bucket_of(row)
            if (await self.rbac.authorize(ctx, "read", bucket_object(bucket.id))).allowed:
                shown.append(bucket.view())
        return shown

    async def get(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        await self.rbac.require(ctx, "read", bucket_object(name))
        return (await self.find(tenant_of(ctx), name)).view()

    async def create(self, ctx: RequestContext, name: str, options: BucketOptions) -> dict[str, Any]:
        bucket_name(name)
        await self.rbac.require(ctx, "admin", bucket_object(name))
        try:
            await self.insert(tenant_of(ctx), name, owner=ctx.user_id, options=options)
        except UniqueViolation as exc:
            raise Conflict("storage.bucket_exists", params={"bucket": name}) from exc
        return {"name": name}

    async def insert(
        self, tenant_id: str | None, name: str, *, owner: str | None, options: BucketOptions | None = None
    ) -> None:
        """Add a bucket without asking RBAC (the caller has); UniqueViolation when the name is taken."""
        options = options or BucketOptions()
        limit, types = self._limit(options.file_size_limit), _types_json(options.allowed_mime_types)
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO apprun_storage_buckets (uid, id, tenant_id, public, file_size_limit, "
                "allowed_mime_types, owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                new_id(),
                bucket_name(name),
                tenant_id,
                bool(options.public),
                limit,
                types,
                owner,
                utcnow(),
            )

    async def update(self, ctx: RequestContext, name: str, options: BucketOptions) -> dict[str, Any]:
        await self.rbac.require(ctx, "admin", bucket_object(name))
        bucket = await self.find(tenant_of(ctx), name)
        public = bucket.public if options.public is None else options.public
        limit = None if options.clear_limit else self._limit(options.file_size_limit) or bucket.file_size_limit
        types = bucket.allowed_mime_types if options.allowed_mime_types is None else options.allowed_mime_types
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE apprun_storage_buckets SET public = $1, file_size_limit = $2, allowed_mime_types = $3, "
                "updated_at = $4 WHERE uid = $5",
                public,
                limit,
                None if options.clear_types else _types_json(list(types) if types is not None else None),
                utcnow(),
                bucket.uid,
            )
        return {"message": "Successfully updated"}

    async def delete(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        await self.rbac.require(ctx, "admin", bucket_object(name))
        bucket = await self.find(tenant_of(ctx), name)
        async with self.db.transaction() as conn:
            where, args = scope_sql(bucket.tenant_id, 2)
            held = await conn.fetchval(
                f"SELECT count(*) FROM apprun_storage_objects WHERE bucket_id = $1 AND {where}",  # noqa: S608
                name,
                *args,
            )
            if held:
                raise Conflict("storage.bucket_not_empty", params={"bucket": name})
            await conn.execute("DELETE FROM apprun_storage_buckets WHERE uid = $1", bucket.uid)
        return {"message": "Successfully deleted"}

    async def find(self, tenant_id: str | None, name: str, conn: Connection | None = None) -> Bucket:
        """The bucket ``name`` of ``tenant_id`` (None: the global one); 404 ``storage.bucket_not_found``."""
        where, args = scope_sql(tenant_id, 2)
        sql = f"SELECT {BUCKET_COLUMNS} FROM apprun_storage_buckets WHERE id = $1 AND {where}"  # noqa: S608
        if conn is None:
            async with self.db.read() as read:
                row = await read.fetchrow(sql, name, *args)
        else:
            row = await conn.fetchrow(sql, name, *args)
        if row is None:
            raise NotFound("storage.bucket_not_found", params={"bucket": name})
        return bucket_of(row)

    def size_limit(self, bucket: Bucket) -> int:
        """The most bytes an object of ``bucket`` may have: its own limit, never above the server's."""
        return min(bucket.file_size_limit or self.max_file_size, self.max_file_size)

    def _limit(self, limit: int | None) -> int | None:
        if limit is None:
            return None
        if limit < 0 or limit > self.max_file_size:
            raise BadRequest("storage.invalid_size_limit", params={"max": self.max_file_size})
        return limit


def _types_json(types: list[str] | None) -> str | None:
    if types is None:
        return None
    if len(types) > MAX_MIME_TYPES or not all(_valid_mime_pattern(t) for t in types):
        raise BadRequest("storage.invalid_mime_types", params={"max": MAX_MIME_TYPES})
    return json.dumps([t.strip().lower() for t in types])


def _valid_mime_pattern(value: str) -> bool:
    kind, _, sub = value.strip().lower().partition("/")
    return bool(kind) and bool(sub) and set(kind + sub) <= set(_MIME + "*") and len(value) <= 255
