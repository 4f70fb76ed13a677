"""data: collection definitions and their history.

The data branch's first revision. A database carried over from the legacy
chain (0001-0005) is stamped here.

Revision ID: data_0001
Revises:
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "data_0001"
down_revision = None
branch_labels = ("data",)
depends_on = None
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_collection_history",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=True),
        sa.Column("applied_by", sa.String(length=36), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_collection_history")),
    )
    op.create_index(
        op.f("ix_apprun_collection_history_collection_version"),
        "apprun_collection_history",
        ["collection", "version"],
        unique=False,
    )
    op.create_table(
        "apprun_collections",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_apprun_collections")),
    )


def downgrade() -> None:
    op.drop_table("apprun_collections")
    op.drop_index(op.f("ix_apprun_collection_history_collection_version"), table_name="apprun_collection_history")
    op.drop_table("apprun_collection_history")
