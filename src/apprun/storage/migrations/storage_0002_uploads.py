"""storage: the apprun_storage_uploads table (TUS resumable uploads under way).

Revision ID: storage_0002
Revises: storage_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "storage_0002"
down_revision = "storage_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apprun_storage_uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("bucket", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("upload_length", sa.BigInteger(), nullable=False),
        sa.Column("upload_offset", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("upsert", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("cache_control", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_storage_uploads_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_storage_uploads")),
    )
    with op.batch_alter_table("apprun_storage_uploads", schema=None) as batch_op:
        batch_op.create_index("ix_apprun_storage_uploads_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("apprun_storage_uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_apprun_storage_uploads_expires_at")
    op.drop_table("apprun_storage_uploads")
