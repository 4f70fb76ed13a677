"""Per-tenant byte quotas: what a tenant's objects may weigh together (``STORAGE_TENANT_QUOTA_BYTES``).

A tenant's usage is the sum of its objects' sizes in the database, never a
counter that could drift. An upload is bounded twice:

- while it streams: at most the room the tenant had when it began (413
  ``storage.quota_exceeded`` at the first byte past it, the staged bytes
  removed), so an over-quota upload is cut off, not stored and then refused;
- when its row commits: the tenant's usage with the new bytes (less those of
  an object it replaces) must fit, asked inside the write transaction with
  the tenant's writers serialized (PostgreSQL: a transaction-level advisory
  lock per tenant; SQLite: its one writer), so two uploads that each fit the
  room they saw cannot pass the quota together.

A global bucket's objects (no tenant) count against no quota. 0 turns
quotas off.
"""

from __future__ import annotations

from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import PayloadTooLarge

__all__ = ["QUOTA_EXCEEDED", "Quota"]

QUOTA_EXCEEDED = "storage.quota_exceeded"
_USED = "SELECT COALESCE(SUM(size), 0) FROM apprun_storage_objects WHERE tenant_id = $1"


class Quota:
    def __init__(self, db: Database, limit: int) -> None:
        self.db = db
        #: Bytes a tenant's objects may weigh together; 0: no quota.
        self.limit = limit

    async def room(self, tenant_id: str | None) -> int | None:
        """Bytes ``tenant_id`` may still add (0 or more), or None when no quota applies."""
        if not self.limit or tenant_id is None:
            return None
        async with self.db.read() as conn:
            used = int(await conn.fetchval(_USED, tenant_id))
        return max(0, self.limit - used)

    async def hold(self, conn: Connection, tenant_id: str | None, adding: int) -> None:
        """In the write transaction: refuse (413) when ``adding`` bytes would take the tenant past its quota."""
        if not self.limit or tenant_id is None or adding <= 0:
            return
        if conn.dialect == "postgres":
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"apprun.storage.quota:{tenant_id}"
            )
        used = int(await conn.fetchval(_USED, tenant_id))
        if used + adding > self.limit:
            raise PayloadTooLarge(QUOTA_EXCEEDED, params={"limit": self.limit, "used": used})
