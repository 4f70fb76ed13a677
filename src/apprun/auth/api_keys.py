"""API keys: per-tenant credentials for servers and scripts.

A key is ``ak_`` plus 43 random characters, shown once at creation; only its
SHA-256 is stored. A *standard* key acts with the role it was given (its
Casbin subject is ``key:<id>``); a *service* key bypasses RBAC inside its
tenant, like Supabase's service role — for trusted server-side code only.
Keys can expire and be revoked; ``last_used_at`` is updated at most once a
minute per key and process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from apprun.auth import audit
from apprun.auth.opaque import hash_token, new_token
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database, Row
from apprun.kernel.errors import BadRequest, NotFound
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.service import Rbac
from apprun.tenancy.queries import TENANT_DISABLED_AT, tenant_state

__all__ = ["KEY_PREFIX", "ApiKeys"]

KEY_PREFIX = "ak_"
_TOUCH_EVERY = 60.0
#: The key with its tenant's policy version and deactivation: one round trip per request.
#: Tenancy owns the tenant table: it writes that part of the query (`tenant_state`).
_KEY_TENANT = tenant_state("k.tenant_id", required=True)
_KEY_SQL = (
    f"SELECT k.id, k.tenant_id, k.kind, k.role, k.expires_at, k.revoked_at, {_KEY_TENANT.columns} "  # noqa: S608 - constant fragments
    f"FROM apprun_api_keys k {_KEY_TENANT.joins} WHERE "
)


def _live(row: Row | None) -> bool:
    """Not revoked and not expired."""
    if row is None or row["revoked_at"] is not None:
        return False
    expires = to_datetime(row["expires_at"])
    return expires is None or expires > utcnow()


class ApiKeys:
    def __init__(self, db: Database, rbac: Rbac) -> None:
        self.db = db
        self.rbac = rbac
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- AssignmentSource ----------------------------------------------
    async def role_assignments(self, conn: Connection, tenant_id: str) -> list[tuple[str, str]]:
        rows = await conn.fetch(
            "SELECT id, role FROM apprun_api_keys WHERE tenant_id = $1 AND kind = 'standard' "
            "AND revoked_at IS NULL AND role IS NOT NULL",
            tenant_id,
        )
        return [(f"key:{r['id']}", r["role"]) for r in rows]

    # --- resolving a presented key ---------------------------------------
    async def lookup(self, key: str) -> Row | None:
        """The live key row (with its tenant's policy version and ``tenant_disabled_at``), or None.

        A key of a deactivated tenant is returned (the caller refuses it with
        its own code), so the client learns why rather than "invalid key".
        """
        if not key.startswith(KEY_PREFIX) or len(key) > 100:
            return None
        async with self.db.read() as conn:
            row = await conn.fetchrow(_KEY_SQL + "k.key_hash = $1", hash_token(key))
        if not _live(row):
            return None
        if row is not None:
            self._touch(row["id"])
        return row

    async def recheck(self, key_id: str, tenant_id: str | None) -> str | None:
        """Does key ``key_id`` of ``tenant_id`` still hold, now? None if so, else the error code."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(_KEY_SQL + "k.id = $1", key_id)
        if row is None or not _live(row) or row["tenant_id"] != tenant_id:
            return "auth.invalid_api_key"
        if row[TENANT_DISABLED_AT] is not None:
            return "auth.tenant_disabled"
        return None

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, 0.0) < _TOUCH_EVERY:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_touch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, key_id: str) -> None:
        try:
            async with self.db.transaction() as conn:
                await conn.execute("UPDATE apprun_api_keys SET last_used_at = $2 WHERE id = $1", key_id, utcnow())
        except Exception:  # noqa: BLE001 - best effort; the next use tries again
            self._touched.pop(key_id, None)

    # --- management API --------------------------------------------------
    async def create(
        self,
        ctx: RequestContext,
        *,
        name: str,
        kind: str,
        role: str | None,
        expires_in_days: int | None,
    ) -> dict[str, Any]:
        await self.rbac.require(ctx, "admin", "api_keys")
        tenant = ctx.tenant_id
        if tenant is None:
            raise BadRequest("tenancy.no_active_tenant")
        name = " ".join((name or "").split())
        if not name or len(name) > 200:
            raise BadRequest("request.invalid", details={"field": "name"})
        if kind not in ("standard", "service"):
            raise BadRequest("request.invalid", details={"field": "kind"})
        if kind == "standard" and not role:
            raise BadRequest("request.invalid", details={"field": "role"})
        if kind == "service":
            role = None
            if ctx.auth_method in ("api_key", "service"):
                # Only a person makes a service key: a key cannot mint a stronger one.
                raise BadRequest("auth.service_key_needs_user")
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise BadRequest("request.invalid", details={"field": "expires_in_days"})
        key = new_token(KEY_PREFIX)
        key_id, now = new_id(), utcnow()
        expires = now + dt.timedelta(days=expires_in_days) if expires_in_days else None
        async with self.db.transaction() as conn:
            if role is not None and not await self.rbac.role_exists(conn, tenant, role):
                raise BadRequest("rbac.role_not_found", params={"name": role})
            await conn.execute(
                "INSERT INTO apprun_api_keys (id, tenant_id, name, prefix, key_hash, kind, role, created_by, "
                "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                key_id,
                tenant,
                name,
                key[:10],
                hash_token(key),
                kind,
                role,
                ctx.user_id,
                now,
                expires,
            )
            await self.rbac.bump(conn, tenant)
            await audit.record(conn, "api_key.created", ctx=ctx, target=key_id, details={"kind": kind, "role": role})
        view = self._view(
            {
                "id": key_id,
                "name": name,
                "prefix": key[:10],
                "kind": kind,
                "role": role,
                "created_by": ctx.user_id,
                "created_at": now,
                "last_used_at": None,
                "expires_at": expires,
                "revoked_at": None,
            }
        )
        view["key"] = key
        return view

    async def list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        await self.rbac.require(ctx, "admin", "api_keys")
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT id, name, prefix, kind, role, created_by, created_at, last_used_at, expires_at, revoked_at "
                "FROM apprun_api_keys WHERE tenant_id = $1 ORDER BY created_at DESC",
                ctx.tenant_id,
            )
        return [self._view(r) for r in rows]

    async def revoke(self, ctx: RequestContext, key_id: str) -> None:
        await self.rbac.require(ctx, "admin", "api_keys")
        tenant = ctx.tenant_id or ""
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE apprun_api_keys SET revoked_at = $3 WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
                key_id,
                tenant,
                utcnow(),
            )
            if changed == 0:
                raise NotFound("auth.api_key_not_found")
            await self.rbac.bump(conn, tenant)
            await audit.record(conn, "api_key.revoked", ctx=ctx, target=key_id)

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        return {
            "id": row["id"],
            "name": row["name"],
            "prefix": row["prefix"],
            "kind": row["kind"],
            "role": row["role"],
            "created_by": row["created_by"],
            "created_at": isoformat(to_datetime(row["created_at"])),
            "last_used_at": isoformat(to_datetime(row["last_used_at"])),
            "expires_at": isoformat(to_datetime(row["expires_at"])),
            "revoked": row["revoked_at"] is not None,
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
