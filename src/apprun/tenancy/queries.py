"""Tenancy's tables as other modules may read them: SQL that tenancy writes.

Tenancy owns ``apprun_tenants`` and ``apprun_memberships``; no other module
names them. Two needs of other modules are met here:

- **The per-request checks** (auth: a session, an API key). They must learn
  the tenant's policy version and whether it is deactivated, and the user's
  membership there, in the *same* query as their own row: one round trip per
  request is the hot path's budget. `tenant_state` gives the JOINs to splice
  into that query and the columns they add, under names tenancy fixes
  (`TENANT_POLICY_VERSION`, `TENANT_DISABLED_AT`, `MEMBER_ROLE`). A fragment rather
  than a view: the query and its plan stay exactly what they were (checked
  with ``EXPLAIN`` on PostgreSQL), no database object has to be kept in step
  with the tables, and SQLite's batch migrations (which copy and rename a
  table) cannot trip over a view that names it.
- **The policy version** rbac keys its decision cache on lives on the tenant
  row; `TenantPolicyVersions` reads and bumps it (rbac's `PolicyVersions`
  port, which the tenancy module fills).
"""

from __future__ import annotations

from dataclasses import dataclass

from apprun.kernel.db import Connection
from apprun.kernel.times import utcnow

__all__ = [
    "MEMBER_ROLE",
    "TENANT_DISABLED_AT",
    "TENANT_POLICY_VERSION",
    "TenantJoin",
    "TenantPolicyVersions",
    "tenant_state",
]

#: The columns `tenant_state` adds to the caller's rows.
TENANT_POLICY_VERSION = "policy_version"
TENANT_DISABLED_AT = "tenant_disabled_at"
MEMBER_ROLE = "member_role"


@dataclass(frozen=True, slots=True)
class TenantJoin:
    """SQL to splice into a query of another module: after its FROM, and into its select list."""

    #: The JOIN clauses (aliases ``tenancy_t`` and ``tenancy_m``, kept clear of the caller's).
    joins: str
    #: Select-list entries: the tenant's policy version and deactivation, and with a user, their role.
    columns: str


def tenant_state(tenant_id: str, user_id: str | None = None, *, required: bool = False) -> TenantJoin:
    """The tenant whose id is the SQL expression ``tenant_id`` and, given ``user_id``, that user's membership.

    ``tenant_id`` and ``user_id`` are SQL of the caller's query (a column such
    as ``s.tenant_id``, or a placeholder such as ``$2``), written in its code,
    never a value. Without ``required`` the tenant is LEFT JOINed (its columns
    are NULL when the id is NULL or the tenant is gone); with it, a row
    without its tenant is dropped. The membership is always optional
    (`MEMBER_ROLE` NULL: not a member).
    """
    join = "JOIN" if required else "LEFT JOIN"
    joins = f"{join} apprun_tenants tenancy_t ON tenancy_t.id = {tenant_id}"
    columns = f"tenancy_t.policy_version AS {TENANT_POLICY_VERSION}, tenancy_t.disabled_at AS {TENANT_DISABLED_AT}"
    if user_id is not None:
        joins += (
            f" LEFT JOIN apprun_memberships tenancy_m ON tenancy_m.tenant_id = {tenant_id} "
            f"AND tenancy_m.user_id = {user_id}"
        )
        columns += f", tenancy_m.role AS {MEMBER_ROLE}"
    return TenantJoin(joins=joins, columns=columns)


class TenantPolicyVersions:
    """rbac's `PolicyVersions` port: the version is a column of the tenant's row."""

    async def current(self, conn: Connection, tenant_id: str) -> int:
        """The tenant's policy version (0 for a tenant that does not exist)."""
        return int(await conn.fetchval("SELECT policy_version FROM apprun_tenants WHERE id = $1", tenant_id) or 0)

    async def bump(self, conn: Connection, tenant_id: str) -> None:
        """Invalidate every cached decision of the tenant, in the caller's transaction (that of the change)."""
        await conn.execute(
            "UPDATE apprun_tenants SET policy_version = policy_version + 1, updated_at = $2 WHERE id = $1",
            tenant_id,
            utcnow(),
        )
