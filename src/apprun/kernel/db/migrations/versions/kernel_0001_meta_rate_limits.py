"""kernel: the apprun_meta table and the rate-limit counters.

The kernel branch's first revision: its tables as the legacy chain (0001-0005)
left them. A database carried over from that chain is stamped here.

Revision ID: kernel_0001
Revises:
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "kernel_0001"
down_revision = None
branch_labels = ("kernel",)
depends_on = None
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_meta",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_apprun_meta"),
    )
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
    op.drop_table("apprun_meta")
