"""rbac: each tenant's roles and policies.

The rbac branch's first revision; roles belong to a tenant, so it depends on
tenancy's first. A database carried over from the legacy chain (0001-0005) is
stamped here.

Revision ID: rbac_0001
Revises:
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rbac_0001"
down_revision = None
branch_labels = ("rbac",)
depends_on = "tenancy_0001"
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_roles",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("builtin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_roles_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_apprun_roles")),
    )
    op.create_table(
        "apprun_policies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("object", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("effect", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "role"],
            ["apprun_roles.tenant_id", "apprun_roles.name"],
            name=op.f("fk_apprun_policies_tenant_id_apprun_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_policies")),
        sa.UniqueConstraint(
            "tenant_id",
            "role",
            "object",
            "action",
            "effect",
            name=op.f("uq_apprun_policies_tenant_id_role_object_action_effect"),
        ),
    )


def downgrade() -> None:
    op.drop_table("apprun_policies")
    op.drop_table("apprun_roles")
