"""Platform administration: users across tenants, and the audit log.

Platform admins are created on the command line (``apprun admin create``),
never with a default password. They manage every user (``/api/v1/users``)
and read every audit event; a tenant's owners and admins read their own
tenant's audit events.
"""

from __future__ import annotations

from typing import Any

from apprun.auth import audit
from apprun.auth.passwords import PasswordPolicy, Passwords
from apprun.auth.sessions import Sessions
from apprun.auth.users import USER_COLUMNS, insert_user, normalize_email, user_by_email, user_by_id, user_view
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from apprun.kernel.times import utcnow
from apprun.rbac.service import PLATFORM_ADMIN, Rbac
from apprun.tenancy.service import Tenancy

__all__ = ["Admin"]

MAX_PAGE = 200


class Admin:
    def __init__(
        self,
        db: Database,
        *,
        passwords: Passwords,
        policy: PasswordPolicy,
        sessions: Sessions,
        tenancy: Tenancy,
        rbac: Rbac,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.policy = policy
        self.sessions = sessions
        self.tenancy = tenancy
        self.rbac = rbac

    @staticmethod
    def _require_platform_admin(ctx: RequestContext) -> None:
        if ctx.user_id is None and ctx.auth_method == "anonymous":
            raise Unauthorized()
        if not ctx.extra.get(PLATFORM_ADMIN):
            raise Forbidden("auth.platform_admin_only")

    # --- creating an admin (CLI) ---------------------------------------
    async def create_platform_admin(self, email: str, password: str) -> tuple[str, bool]:
        """Create a platform admin, or promote an existing user; returns (id, created)."""
        email = normalize_email(email)
        self.policy.check(password, email)
        password_hash = await self.passwords.hash(password)
        async with self.db.transaction() as conn:
            row = await user_by_email(conn, email)
            if row is not None:
                await conn.execute(
                    "UPDATE apprun_users SET is_platform_admin = $2, password_hash = $3, updated_at = $4 WHERE id = $1",
                    row["id"],
                    True,
                    password_hash,
                    utcnow(),
                )
                await audit.record(conn, "admin.promoted", actor_id=row["id"], target=email)
                return str(row["id"]), False
            user_id = await insert_user(
                conn, email=email, password_hash=password_hash, platform_admin=True, verified=True
            )
            await self.tenancy.create_tenant(conn, name="Platform admin's workspace", owner_id=user_id, personal=True)
            await audit.record(conn, "admin.created", actor_id=user_id, target=email)
            return user_id, True

    # --- /api/v1/users ---------------------------------------------------
    async def list_users(
        self, ctx: RequestContext, *, email: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        self._require_platform_admin(ctx)
        limit = max(1, min(limit, MAX_PAGE))
        sql = f"SELECT {USER_COLUMNS} FROM apprun_users"  # noqa: S608 - constant columns
        args: list[Any] = []
        if email:
            args.append(f"%{email.strip().lower()}%")
            sql += " WHERE email LIKE $1"
        sql += f" ORDER BY created_at, id LIMIT {limit} OFFSET {max(0, offset)}"
        async with self.db.read() as conn:
            rows = await conn.fetch(sql, *args)
        return [user_view(r) for r in rows]

    async def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        self._require_platform_admin(ctx)
        async with self.db.read() as conn:
            row = await user_by_id(conn, user_id)
        if row is None:
            raise NotFound("auth.user_not_found")
        return user_view(row)

    async def create_user(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_admin(ctx)
        allowed = {"email", "password", "name", "platform_admin", "email_verified"}
        if set(body) - allowed:
            raise BadRequest("request.read_only_fields", details={"fields": sorted(set(body) - allowed)})
        email = normalize_email(str(body.get("email", "")))
        password = body.get("password")
        password_hash = None
        if password is not None:
            self.policy.check(str(password), email)
            password_hash = await self.passwords.hash(str(password))
        async with self.db.transaction() as conn:
            if await user_by_email(conn, email) is not None:
                raise Conflict("auth.email_taken")
            user_id = await insert_user(
                conn,
                email=email,
                password_hash=password_hash,
                name=body.get("name"),
                platform_admin=bool(body.get("platform_admin", False)),
                verified=bool(body.get("email_verified", False)),
            )
            label = body.get("name") or email.split("@", 1)[0]
            await self.tenancy.create_tenant(conn, name=f"{label}'s workspace", owner_id=user_id, personal=True)
            await audit.record(conn, "user.created", ctx=ctx, tenant_id=None, target=user_id)
            row = await user_by_id(conn, user_id)
        if row is None:  # pragma: no cover - inserted in this very transaction
            raise NotFound("auth.user_not_found")
        return user_view(row)

    async def update_user(self, ctx: RequestContext, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_admin(ctx)
        allowed = {"name", "disabled", "platform_admin", "email_verified", "password"}
        if set(body) - allowed:
            raise BadRequest("request.read_only_fields", details={"fields": sorted(set(body) - allowed)})
        async with self.db.read() as conn:
            row = await user_by_id(conn, user_id)
        if row is None:
            raise NotFound("auth.user_not_found")
        new_hash = None
        if body.get("password") is not None:
            self.policy.check(str(body["password"]), row["email"])
            new_hash = await self.passwords.hash(str(body["password"]))
        now = utcnow()
        async with self.db.transaction() as conn:
            if "name" in body:
                await conn.execute("UPDATE apprun_users SET name = $2 WHERE id = $1", user_id, body["name"])
            if "platform_admin" in body:
                await conn.execute(
                    "UPDATE apprun_users SET is_platform_admin = $2 WHERE id = $1",
                    user_id,
                    bool(body["platform_admin"]),
                )
            if "email_verified" in body:
                await conn.execute(
                    "UPDATE apprun_users SET email_verified_at = $2 WHERE id = $1",
                    user_id,
                    now if body["email_verified"] else None,
                )
            if "disabled" in body:
                await conn.execute(
                    "UPDATE apprun_users SET disabled_at = $2 WHERE id = $1", user_id, now if body["disabled"] else None
                )
                if body["disabled"]:
                    await self.sessions.revoke_all(conn, user_id, "disabled")
            if new_hash is not None:
                await conn.execute("UPDATE apprun_users SET password_hash = $2 WHERE id = $1", user_id, new_hash)
                await self.sessions.revoke_all(conn, user_id, "password_reset_by_admin")
            await conn.execute("UPDATE apprun_users SET updated_at = $2 WHERE id = $1", user_id, now)
            changes = sorted(k for k in body if k != "password") + (["password"] if new_hash else [])
            await audit.record(
                conn, "user.updated", ctx=ctx, tenant_id=None, target=user_id, details={"fields": changes}
            )
        return await self.get_user(ctx, user_id)

    async def delete_user(self, ctx: RequestContext, user_id: str) -> None:
        self._require_platform_admin(ctx)
        if user_id == ctx.user_id:
            raise BadRequest("auth.cannot_delete_self")
        async with self.db.transaction() as conn:
            # Tenancy's rule: a shared tenant keeps an owner (409), a personal one goes with its owner.
            await self.tenancy.release_user(conn, user_id)
            deleted = await conn.execute("DELETE FROM apprun_users WHERE id = $1", user_id)
            if deleted == 0:
                raise NotFound("auth.user_not_found")
            await audit.record(conn, "user.deleted", ctx=ctx, tenant_id=None, target=user_id)

    # --- audit log -------------------------------------------------------
    async def audit_events(
        self, ctx: RequestContext, *, action: str | None, limit: int, before: str | None
    ) -> list[dict[str, Any]]:
        limit = max(1, min(limit, MAX_PAGE))
        clauses: list[str] = []
        args: list[Any] = []
        if not ctx.extra.get(PLATFORM_ADMIN):
            await self.rbac.require(ctx, "read", "audit")
            args.append(ctx.tenant_id)
            clauses.append(f"tenant_id = ${len(args)}")
        if action:
            args.append(action)
            clauses.append(f"action = ${len(args)}")
        if before:
            args.append(before)
            clauses.append(f"id < ${len(args)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self.db.read() as conn:
            # Fixed clauses and an int limit; every value is bound.
            columns = "id, tenant_id, actor_id, actor_type, action, target, ip, details, created_at"
            sql = f"SELECT {columns} FROM apprun_audit_log{where} ORDER BY id DESC LIMIT {limit}"  # noqa: S608
            rows = await conn.fetch(
                sql,
                *args,
            )
        return [audit.audit_view(r) for r in rows]
