"""storage: the apprun_storage_buckets and apprun_storage_objects tables.

The storage branch's first revision. Buckets and objects belong to a tenant
(a foreign key to tenancy's apprun_tenants), so it depends on tenancy's
first. Global buckets (no tenant) get partial unique indexes, since NULLs
never clash in a unique constraint.

Revision ID: storage_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "storage_0001"
down_revision = None
branch_labels = ("storage",)
depends_on = "tenancy_0001"


def upgrade() -> None:
    op.create_table(
        "apprun_storage_buckets",
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("file_size_limit", sa.BigInteger(), nullable=True),
        sa.Column("allowed_mime_types", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_storage_buckets_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_apprun_storage_buckets")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_apprun_storage_buckets_tenant_id_id")),
    )
    with op.batch_alter_table("apprun_storage_buckets", schema=None) as batch_op:
        batch_op.create_index(
            "ux_apprun_storage_buckets_global_id",
            ["id"],
            unique=True,
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )

    op.create_table(
        "apprun_storage_objects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("bucket_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("cache_control", sa.String(length=255), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_accessed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_storage_objects_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_storage_objects")),
        sa.UniqueConstraint(
            "tenant_id", "bucket_id", "name", name=op.f("uq_apprun_storage_objects_tenant_id_bucket_id_name")
        ),
    )
    with op.batch_alter_table("apprun_storage_objects", schema=None) as batch_op:
        batch_op.create_index(
            "ux_apprun_storage_objects_global_name",
            ["bucket_id", "name"],
            unique=True,
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("apprun_storage_objects", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_apprun_storage_objects_global_name",
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )

    op.drop_table("apprun_storage_objects")
    with op.batch_alter_table("apprun_storage_buckets", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_apprun_storage_buckets_global_id",
            sqlite_where=sa.text("tenant_id IS NULL"),
            postgresql_where=sa.text("tenant_id IS NULL"),
        )

    op.drop_table("apprun_storage_buckets")
