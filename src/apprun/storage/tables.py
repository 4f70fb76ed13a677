"""The storage module's tables: buckets, the objects in them, and resumable uploads under way.

Defined on the kernel's one `metadata`; created by the migrations in
``storage/migrations/`` (branch ``storage``). A bucket and its objects belong
to a tenant (a foreign key to tenancy's tenants deletes them with it), or to
no tenant for a global bucket (``tenant_id`` NULL). A bucket's ``id`` is its
name, as in Supabase Storage, unique within its tenant; because NULLs never
clash in a unique constraint, global buckets and their objects get partial
unique indexes of their own. The bytes live in the backend, at a key built
from (tenant, bucket, name); the row is what makes an object exist.
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = ["storage_buckets", "storage_objects", "storage_uploads"]

_GLOBAL = sa.text("tenant_id IS NULL")

storage_buckets = sa.Table(
    "apprun_storage_buckets",
    metadata,
    #: A surrogate key: the name (``id``) is unique per tenant only.
    id_column("uid", primary_key=True),
    sa.Column("id", sa.String(100), nullable=False),
    id_column("tenant_id", nullable=True),
    sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("file_size_limit", sa.BigInteger, nullable=True),
    #: A JSON array of MIME types (``image/*`` allowed), NULL for any.
    sa.Column("allowed_mime_types", sa.Text, nullable=True),
    id_column("owner", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "id"),
    sa.Index("ux_apprun_storage_buckets_global_id", "id", unique=True, sqlite_where=_GLOBAL, postgresql_where=_GLOBAL),
)

storage_objects = sa.Table(
    "apprun_storage_objects",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=True),
    sa.Column("bucket_id", sa.String(100), nullable=False),
    #: The object's key in its bucket (``folder/photo.png``), at most 1,024 bytes.
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime_type", sa.String(255), nullable=False),
    #: The MD5 of the bytes, hex: the HTTP ETag (quoted on the wire).
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("cache_control", sa.String(255), nullable=True),
    #: The uploader's metadata, a JSON object.
    sa.Column("metadata", sa.Text, nullable=True),
    id_column("owner", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    timestamp("last_accessed_at", nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "bucket_id", "name"),
    sa.Index(
        "ux_apprun_storage_objects_global_name",
        "bucket_id",
        "name",
        unique=True,
        sqlite_where=_GLOBAL,
        postgresql_where=_GLOBAL,
    ),
)

#: A TUS upload under way (storage/uploads.py): where its object will go and how many bytes have arrived.
#: Its bytes are in ``STORAGE_DIR/.uploads/<id>``; the row goes when the object is committed, the upload
#: is terminated, or the cleanup pass finds it past ``expires_at``. ``upload_length``/``upload_offset``:
#: ``offset`` is a reserved word in PostgreSQL.
storage_uploads = sa.Table(
    "apprun_storage_uploads",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=False),
    sa.Column("bucket", sa.String(100), nullable=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("upload_length", sa.BigInteger, nullable=False),
    #: Bytes durably written to the staging file (fsynced before this is raised).
    sa.Column("upload_offset", sa.BigInteger, nullable=False),
    #: The uploader's metadata for the object, a JSON object.
    sa.Column("metadata", sa.Text, nullable=True),
    sa.Column("upsert", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("content_type", sa.String(255), nullable=True),
    sa.Column("cache_control", sa.String(255), nullable=True),
    id_column("created_by", nullable=True),
    timestamp("expires_at", nullable=False),
    timestamp("created_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.Index("ix_apprun_storage_uploads_expires_at", "expires_at"),
)
