"""tenancy: the memberships table.

Split from tenancy_0001 because a membership refers to a user (auth) and to
a role (rbac), whose tables refer to tenants: so memberships come after auth's
and rbac's first revisions. A database carried over from the legacy chain
(0001-0005) is stamped here.

Revision ID: tenancy_0002
Revises: tenancy_0001
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "tenancy_0002"
down_revision = "tenancy_0001"
branch_labels = None
depends_on = ("auth_0001", "rbac_0001")
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_memberships",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("added_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "role"],
            ["apprun_roles.tenant_id", "apprun_roles.name"],
            name=op.f("fk_apprun_memberships_tenant_id_apprun_roles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_memberships_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["apprun_users.id"],
            name=op.f("fk_apprun_memberships_user_id_apprun_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name=op.f("pk_apprun_memberships")),
    )
    op.create_index(op.f("ix_apprun_memberships_user_id"), "apprun_memberships", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_apprun_memberships_user_id"), table_name="apprun_memberships")
    op.drop_table("apprun_memberships")
