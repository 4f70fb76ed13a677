"""Authorization: the one function every module calls, and the tenant's rules.

``await rbac.authorize(ctx, action, object)`` answers for the request's
subject in its active tenant and says which rule decided. Two kinds of caller
bypass the rules: a tenant's service API key (like Supabase's service role,
for server-side code) inside its own tenant, and a platform admin. Everyone
else needs a role in the tenant that a rule allows.

Roles and policies are managed per tenant through this service; each change
bumps the tenant's ``policy_version`` in the same transaction. The version is
kept by tenancy (on the tenant's row): rbac, below tenancy, reads and bumps
it through its `PolicyVersions` port, which the tenancy module fills (`use`).
"""

from __future__ import annotations

from typing import Any

from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.enforcer import AssignmentSource, Decision, PolicyVersions, TenantEnforcers
from apprun.rbac.model import ACTIONS, BUILTIN_POLICIES, BUILTIN_ROLES, valid_object, valid_role_name

__all__ = ["Decision", "PolicyVersions", "Rbac"]

#: Keys of ``RequestContext.extra`` the auth layer fills.
POLICY_VERSION = "policy_version"
PLATFORM_ADMIN = "platform_admin"


def subject_of(ctx: RequestContext) -> str:
    """The Casbin subject of a request: the user id, or ``key:<id>`` for an API key."""
    if ctx.auth_method == "api_key":
        return f"key:{ctx.extra.get('api_key_id')}"
    return ctx.user_id or "anonymous"


class Rbac:
    """Policy checks and policy management."""

    def __init__(
        self, db: Database, sources: list[AssignmentSource] | None = None, *, versions: PolicyVersions | None = None
    ) -> None:
        self.db = db
        self.enforcers = TenantEnforcers(list(sources or []), versions=versions)

    def add_source(self, source: AssignmentSource) -> None:
        self.enforcers.add_source(source)

    def use(self, *, versions: PolicyVersions) -> None:
        """Fill the `PolicyVersions` port (the tenancy module does, in its ``wire``)."""
        self.enforcers.versions = versions

    # --- checks -------------------------------------------------------
    async def authorize(self, ctx: RequestContext, action: str, obj: str) -> Decision:
        """May this request do ``action`` on ``obj`` in its active tenant?"""
        if ctx.auth_method == "service":
            return Decision(True, ("service", ctx.tenant_id or "", "*", "*", "allow"), "service key", ("service",))
        if ctx.extra.get(PLATFORM_ADMIN):
            return Decision(True, ("platform_admin", "*", "*", "*", "allow"), "platform admin", ("platform_admin",))
        if not ctx.is_authenticated and ctx.auth_method != "api_key":
            return Decision(False, None, "not signed in")
        if ctx.tenant_id is None:
            return Decision(False, None, "no active tenant")
        subject = subject_of(ctx)
        version = ctx.extra.get(POLICY_VERSION)
        if isinstance(version, int):
            hit = self.enforcers.cached(ctx.tenant_id, version, subject, obj, action)
            if hit is not None:
                return hit
        async with self.db.read() as conn:
            if not isinstance(version, int):
                version = await self.enforcers.versions.current(conn, ctx.tenant_id)
            return await self.enforcers.decide(conn, ctx.tenant_id, version, subject, obj=obj, action=action)

    async def require(self, ctx: RequestContext, action: str, obj: str) -> Decision:
        """`authorize`, raising 401 for anonymous callers and 403 when denied."""
        decision = await self.authorize(ctx, action, obj)
        if not decision.allowed:
            if not ctx.is_authenticated and ctx.auth_method == "anonymous":
                raise Unauthorized()
            raise Forbidden("auth.forbidden", details={"action": action, "object": obj, "reason": decision.reason})
        return decision

    async def explain(self, ctx: RequestContext, action: str, obj: str) -> dict[str, Any]:
        if action not in ACTIONS or not valid_object(obj):
            raise BadRequest("rbac.invalid_rule", details={"action": action, "object": obj})
        decision = await self.authorize(ctx, action, obj)
        rule = None
        if decision.rule is not None:
            role, tenant, pattern, act, effect = (*decision.rule, "", "", "", "", "")[:5]
            rule = {"role": role, "tenant_id": tenant, "object": pattern, "action": act, "effect": effect}
        return {
            "allowed": decision.allowed,
            "action": action,
            "object": obj,
            "tenant_id": ctx.tenant_id,
            "subject": subject_of(ctx),
            "roles": list(decision.roles),
            "rule": rule,
            "reason": decision.reason,
        }

    async def roles_in(self, conn: Connection, tenant_id: str, subject: str) -> tuple[str, ...]:
        version = await self.enforcers.versions.current(conn, tenant_id)
        return await self.enforcers.roles_of(conn, tenant_id, version, subject)

    # --- tenant lifecycle (called by tenancy, inside its transaction) --
    async def seed_tenant(self, conn: Connection, tenant_id: str) -> None:
        now = utcnow()
        for name, description in BUILTIN_ROLES.items():
            await conn.execute(
                "INSERT INTO apprun_roles (tenant_id, name, description, builtin, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                tenant_id,
                name,
                description,
                True,
                now,
            )
        await conn.executemany(
            "INSERT INTO apprun_policies (id, tenant_id, role, object, action, effect, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(new_id(), tenant_id, role, obj, act, eft, now) for role, obj, act, eft in BUILTIN_POLICIES],
        )

    async def role_exists(self, conn: Connection, tenant_id: str, role: str) -> bool:
        found = await conn.fetchval("SELECT 1 FROM apprun_roles WHERE tenant_id = $1 AND name = $2", tenant_id, role)
        return found is not None

    async def bump(self, conn: Connection, tenant_id: str) -> None:
        """Invalidate every cached decision of the tenant (same transaction as the change)."""
        await self.enforcers.versions.bump(conn, tenant_id)

    # --- roles and policies API ----------------------------------------
    async def list_roles(self, ctx: RequestContext) -> list[dict[str, Any]]:
        tenant = await self._admin_tenant(ctx, "read", "roles")
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT name, description, builtin, created_at FROM apprun_roles WHERE tenant_id = $1 ORDER BY name",
                tenant,
            )
        return [
            {
                "name": r["name"],
                "description": r["description"],
                "builtin": bool(r["builtin"]),
                "created_at": isoformat(to_datetime(r["created_at"])),
            }
            for r in rows
        ]

    async def create_role(self, ctx: RequestContext, name: str, description: str | None) -> dict[str, Any]:
        tenant = await self._admin_tenant(ctx, "admin", "roles")
        if not valid_role_name(name):
            raise BadRequest("rbac.invalid_role_name", params={"name": name})
        async with self.db.transaction() as conn:
            if await self.role_exists(conn, tenant, name):
                raise Conflict("rbac.role_exists", params={"name": name})
            now = utcnow()
            await conn.execute(
                "INSERT INTO apprun_roles (tenant_id, name, description, builtin, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                tenant,
                name,
                description,
                False,
                now,
            )
            await self.bump(conn, tenant)
        return {"name": name, "description": description, "builtin": False, "created_at": isoformat(now)}

    async def delete_role(self, ctx: RequestContext, name: str) -> None:
        tenant = await self._admin_tenant(ctx, "admin", "roles")
        if name in BUILTIN_ROLES:
            raise BadRequest("rbac.builtin_role", params={"name": name})
        async with self.db.transaction() as conn:
            if not await self.role_exists(conn, tenant, name):
                raise NotFound("rbac.role_not_found", params={"name": name})
            holders = [
                subject
                for source in self.enforcers.sources
                for subject, held in await source.role_assignments(conn, tenant)
                if held == name
            ]
            if holders:
                raise Conflict("rbac.role_in_use", params={"name": name}, details={"holders": len(holders)})
            await conn.execute("DELETE FROM apprun_policies WHERE tenant_id = $1 AND role = $2", tenant, name)
            await conn.execute("DELETE FROM apprun_roles WHERE tenant_id = $1 AND name = $2", tenant, name)
            await self.bump(conn, tenant)

    async def list_policies(self, ctx: RequestContext, role: str | None = None) -> list[dict[str, Any]]:
        tenant = await self._admin_tenant(ctx, "read", "policies")
        sql = "SELECT id, role, object, action, effect, created_at FROM apprun_policies WHERE tenant_id = $1"
        args: list[Any] = [tenant]
        if role:
            sql += " AND role = $2"
            args.append(role)
        async with self.db.read() as conn:
            rows = await conn.fetch(sql + " ORDER BY role, object, action", *args)
        return [self._policy_view(r) for r in rows]

    async def add_policy(self, ctx: RequestContext, role: str, obj: str, action: str, effect: str) -> dict[str, Any]:
        tenant = await self._admin_tenant(ctx, "admin", "policies")
        if action not in ACTIONS or not valid_object(obj) or effect not in ("allow", "deny"):
            raise BadRequest("rbac.invalid_rule", details={"action": action, "object": obj, "effect": effect})
        async with self.db.transaction() as conn:
            if not await self.role_exists(conn, tenant, role):
                raise NotFound("rbac.role_not_found", params={"name": role})
            exists = await conn.fetchval(
                "SELECT id FROM apprun_policies WHERE tenant_id = $1 AND role = $2 AND object = $3 "
                "AND action = $4 AND effect = $5",
                tenant,
                role,
                obj,
                action,
                effect,
            )
            if exists:
                raise Conflict("rbac.policy_exists")
            policy_id, now = new_id(), utcnow()
            await conn.execute(
                "INSERT INTO apprun_policies (id, tenant_id, role, object, action, effect, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                policy_id,
                tenant,
                role,
                obj,
                action,
                effect,
                now,
            )
            await self.bump(conn, tenant)
        return {
            "id": policy_id,
            "role": role,
            "object": obj,
            "action": action,
            "effect": effect,
            "created_at": isoformat(now),
        }

    async def remove_policy(self, ctx: RequestContext, policy_id: str) -> None:
        tenant = await self._admin_tenant(ctx, "admin", "policies")
        async with self.db.transaction() as conn:
            deleted = await conn.execute(
                "DELETE FROM apprun_policies WHERE id = $1 AND tenant_id = $2", policy_id, tenant
            )
            if deleted == 0:
                raise NotFound("rbac.policy_not_found")
            await self.bump(conn, tenant)

    async def _admin_tenant(self, ctx: RequestContext, action: str, obj: str) -> str:
        await self.require(ctx, action, obj)
        if ctx.tenant_id is None:
            raise BadRequest("tenancy.no_active_tenant")
        return ctx.tenant_id

    @staticmethod
    def _policy_view(row: Any) -> dict[str, Any]:
        return {
            "id": row["id"],
            "role": row["role"],
            "object": row["object"],
            "action": row["action"],
            "effect": row["effect"],
            "created_at": isoformat(to_datetime(row["created_at"])),
        }
