"""data: collection definitions and their history; the data role for row-level security.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


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
