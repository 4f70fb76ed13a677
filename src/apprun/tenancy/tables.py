"""The tenancy module's tables: tenants and memberships.

Defined on the kernel's one `metadata`; created by the migrations in
``tenancy/migrations/`` (branch ``tenancy``). Other modules read them only
through tenancy's query functions (``tenancy/queries.py``) and services.
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = ["memberships", "tenants"]

tenants = sa.Table(
    "apprun_tenants",
    metadata,
    id_column(primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("personal", sa.Boolean, nullable=False, server_default=sa.false()),
    id_column("created_by", nullable=True),
    #: Bumped in the same transaction as any change to the tenant's roles,
    #: policies or memberships; authorization caches key on it.
    sa.Column("policy_version", sa.Integer, nullable=False, server_default="1"),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    #: Set while the tenant is deactivated: its members' tokens stop working there.
    timestamp("disabled_at"),
)

memberships = sa.Table(
    "apprun_memberships",
    metadata,
    id_column("tenant_id", primary_key=True),
    id_column("user_id", primary_key=True),
    sa.Column("role", sa.String(100), nullable=False),
    id_column("added_by", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    # A role in use cannot be deleted (RESTRICT); it must be reassigned first.
    sa.ForeignKeyConstraint(["tenant_id", "role"], ["apprun_roles.tenant_id", "apprun_roles.name"]),
    sa.Index(None, "user_id"),
)
