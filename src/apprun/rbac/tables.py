"""The rbac module's tables: each tenant's roles and policies.

Defined on the kernel's one `metadata`; created by the migrations in
``rbac/migrations/`` (branch ``rbac``). Roles belong to a tenant (a foreign
key to tenancy's tenants), so rbac's first revision depends on tenancy's.
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = ["policies", "roles"]

roles = sa.Table(
    "apprun_roles",
    metadata,
    id_column("tenant_id", primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
    timestamp("created_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
)

#: Casbin ``p`` rules of the RBAC-with-domains model: (role, tenant, object, action, effect).
policies = sa.Table(
    "apprun_policies",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=False),
    sa.Column("role", sa.String(100), nullable=False),
    sa.Column("object", sa.String(300), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("effect", sa.String(10), nullable=False),
    timestamp("created_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "role"], ["apprun_roles.tenant_id", "apprun_roles.name"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "role", "object", "action", "effect"),
)
