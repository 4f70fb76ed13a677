"""security: tenants can be deactivated; rate-limit counters shared through the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apprun_tenants") as batch:
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "apprun_rate_limits",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_apprun_rate_limits")),
    )
    op.create_index(op.f("ix_apprun_rate_limits_window_start"), "apprun_rate_limits", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_apprun_rate_limits_window_start"), table_name="apprun_rate_limits")
    op.drop_table("apprun_rate_limits")
    with op.batch_alter_table("apprun_tenants") as batch:
        batch.drop_column("disabled_at")
