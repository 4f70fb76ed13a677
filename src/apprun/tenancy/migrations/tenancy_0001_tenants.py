"""tenancy: the tenants table.

The tenancy branch's first revision. Tenants come first of all the modules'
tables: rbac's roles, auth's sessions, API keys and one-time tokens, and
events' webhooks refer to them (their first revisions depend on this one).
A database carried over from the legacy chain (0001-0005) is stamped here.

Revision ID: tenancy_0001
Revises:
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "tenancy_0001"
down_revision = None
branch_labels = ("tenancy",)
depends_on = None
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_tenants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("personal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("policy_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_tenants")),
    )


def downgrade() -> None:
    op.drop_table("apprun_tenants")
