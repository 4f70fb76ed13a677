"""Buckets and objects as rows: the SQL the storage service runs, and the shapes the API shows.

Every statement is scoped by tenant: ``tenant_id = $n`` for a tenant's bucket,
``tenant_id IS NULL`` for a global one (`scope_sql`), so a query can only find
rows of the scope it was given. The shapes are Supabase Storage's, which its
clients parse (``storage3``'s ``BaseBucket`` needs ``owner`` as a string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apprun.kernel.db import Connection, Row
from apprun.kernel.times import isoformat, to_datetime

__all__ = [
    "BUCKET_COLUMNS",
    "OBJECT_COLUMNS",
    "Bucket",
    "StoredObject",
    "bucket_of",
    "fetch_object",
    "object_of",
    "scope_sql",
]

BUCKET_COLUMNS = "uid, id, tenant_id, public, file_size_limit, allowed_mime_types, owner, created_at, updated_at"
OBJECT_COLUMNS = (
    "id, tenant_id, bucket_id, name, size, mime_type, etag, cache_control, metadata, owner, "
    "created_at, updated_at, last_accessed_at"
)


def scope_sql(tenant_id: str | None, placeholder: int) -> tuple[str, list[Any]]:
    """The tenant predicate and its argument (none for a global bucket's NULL)."""
    if tenant_id is None:
        return "tenant_id IS NULL", []
    return f"tenant_id = ${placeholder}", [tenant_id]


@dataclass(frozen=True, slots=True)
class Bucket:
    uid: str
    id: str
    tenant_id: str | None
    public: bool
    file_size_limit: int | None
    allowed_mime_types: tuple[str, ...] | None
    owner: str | None
    created_at: datetime
    updated_at: datetime

    def view(self) -> dict[str, Any]:
        """The bucket as Supabase Storage shows it."""
        return {
            "id": self.id,
            "name": self.id,
            "owner": self.owner or "",
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": list(self.allowed_mime_types) if self.allowed_mime_types is not None else None,
            "type": "STANDARD",
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


def bucket_of(row: Row) -> Bucket:
    types = row["allowed_mime_types"]
    return Bucket(
        uid=row["uid"],
        id=row["id"],
        tenant_id=row["tenant_id"],
        public=bool(row["public"]),
        file_size_limit=row["file_size_limit"],
        allowed_mime_types=tuple(json.loads(types)) if types is not None else None,
        owner=row["owner"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
    )


@dataclass(frozen=True, slots=True)
class StoredObject:
    id: str
    tenant_id: str | None
    bucket_id: str
    name: str
    size: int
    mime_type: str
    etag: str
    cache_control: str | None
    metadata: dict[str, Any] | None
    owner: str | None
    created_at: datetime
    updated_at: datetime
    last_accessed_at: datetime | None

    def system_metadata(self) -> dict[str, Any]:
        """What Supabase Storage keeps in an object's ``metadata`` (its list replies carry it)."""
        return {
            "eTag": f'"{self.etag}"',
            "size": self.size,
            "mimetype": self.mime_type,
            "cacheControl": self.cache_control_header,
            "lastModified": isoformat(self.updated_at),
            "contentLength": self.size,
            "httpStatusCode": 200,
        }

    @property
    def cache_control_header(self) -> str:
        """Supabase stores ``cacheControl`` as given (``3600``) and serves it as ``max-age=3600``."""
        value = self.cache_control or "3600"
        return f"max-age={value}" if value.isdigit() else value

    def list_view(self) -> dict[str, Any]:
        """An entry of ``POST /object/list/{bucket}``: the name relative to the listed folder is set by the caller."""
        return {
            "name": self.name,
            "id": self.id,
            "updated_at": isoformat(self.updated_at),
            "created_at": isoformat(self.created_at),
            "last_accessed_at": isoformat(self.last_accessed_at),
            "metadata": self.system_metadata(),
        }

    def info_view(self) -> dict[str, Any]:
        """``GET /object/info/{bucket}/{path}``: the object's facts and its uploader's metadata."""
        return {
            "id": self.id,
            "name": self.name,
            "bucket_id": self.bucket_id,
            "version": self.etag,
            "size": self.size,
            "content_type": self.mime_type,
            "cache_control": self.cache_control_header,
            "etag": f'"{self.etag}"',
            "metadata": self.metadata,
            "owner": self.owner,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "last_modified": isoformat(self.updated_at),
            "last_accessed_at": isoformat(self.last_accessed_at),
        }

    def event_data(self) -> dict[str, Any]:
        """What ``apprun.object.*`` events carry: the facts, not the uploader's metadata (it may be private)."""
        return {
            "id": self.id,
            "bucket": self.bucket_id,
            "name": self.name,
            "size": self.size,
            "mime_type": self.mime_type,
            "etag": self.etag,
            "owner": self.owner,
        }


def object_of(row: Row) -> StoredObject:
    metadata = row["metadata"]
    return StoredObject(
        id=row["id"],
        tenant_id=row["tenant_id"],
        bucket_id=row["bucket_id"],
        name=row["name"],
        size=int(row["size"]),
        mime_type=row["mime_type"],
        etag=row["etag"],
        cache_control=row["cache_control"],
        metadata=json.loads(metadata) if metadata is not None else None,
        owner=row["owner"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
        last_accessed_at=to_datetime(row["last_accessed_at"]),
    )


async def fetch_object(conn: Connection, tenant_id: str | None, bucket: str, name: str) -> StoredObject | None:
    where, args = scope_sql(tenant_id, 3)
    row = await conn.fetchrow(
        f"SELECT {OBJECT_COLUMNS} FROM apprun_storage_objects WHERE bucket_id = $1 AND name = $2 AND {where}",  # noqa: S608 - fixed text
        bucket,
        name,
        *args,
    )
    return object_of(row) if row is not None else None


def _time(value: Any) -> datetime:
    parsed = to_datetime(value)
    if parsed is None:  # pragma: no cover - the columns are NOT NULL
        raise ValueError("missing timestamp")
    return parsed
