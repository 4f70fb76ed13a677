"""Tenants and memberships.

A tenant is a workspace whose rows, files, events and rules are isolated from
every other tenant's. Users belong to tenants through memberships, each with
one role; a user's token carries exactly one active tenant.

Who may do what is asked of RBAC in the tenant concerned: reading a tenant
and its members needs ``read`` on ``tenant``/``members``, managing members
``admin`` on ``members``, renaming ``update`` on ``tenant``, deleting
``delete`` on ``tenant`` (owners only: admins carry a deny rule). A caller
who is not a member of the tenant gets 404, not 403, so tenant ids cannot be
probed. Only owners may make or unmake owners, and a tenant always keeps at
least one owner.

A platform admin may deactivate a tenant (``disabled_at``) and reactivate
it. While it is deactivated every credential of the tenant stops working at
once (the auth layer reads ``disabled_at`` with each request's session or API
key), nobody can switch or refresh into it, new sessions start elsewhere,
and only a platform admin may change it; its members still see it, marked
``disabled``, in their list of tenants.

Adding a member is an invitation the invitee accepts (as Appwrite Teams,
GitHub organisations and Slack do): ``add_member`` mails a single-use token
whether or not the address has an account, and answers both alike, so no
caller learns who is registered (every user owns a tenant, so anyone could
ask) and nobody joins a tenant without consenting. Only a platform admin,
who can list every user anyway, adds an existing user at once. The auth
module owns the tokens and the acceptance (``POST /api/v1/invitations/accept``,
or sign-up with ``invite_token``).

Users live in the auth module; tenancy reaches them through the `Directory`
port, which auth implements and the app wires in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.service import PLATFORM_ADMIN, POLICY_VERSION, Rbac

__all__ = ["Directory", "Tenancy"]

MAX_NAME = 200
_DEACTIVATE = "UPDATE apprun_tenants SET disabled_at = $2, updated_at = $3 WHERE id = $1 AND disabled_at IS NULL"
_REACTIVATE = "UPDATE apprun_tenants SET disabled_at = $2, updated_at = $3 WHERE id = $1 AND disabled_at IS NOT NULL"


class Directory(Protocol):
    """What tenancy needs to know about users (implemented by auth)."""

    async def find_user_id(self, conn: Connection, email: str) -> str | None: ...

    async def describe_users(self, conn: Connection, user_ids: list[str]) -> dict[str, dict[str, Any]]: ...

    async def invite(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        tenant_name: str,
        email: str,
        role: str,
        inviter_id: str | None,
        locale: str,
    ) -> str:
        """Mail ``email`` a single-use invitation (replacing a pending one to this tenant); its id."""
        ...

    async def pending_invitations(self, conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's invitations neither accepted, revoked nor expired, oldest first."""
        ...

    async def revoke_invitation(self, conn: Connection, tenant_id: str, invitation_id: str) -> dict[str, Any] | None:
        """Delete a pending invitation of the tenant (its link stops working); it, or None if there is none."""
        ...

    async def audit(
        self, conn: Connection, ctx: RequestContext, action: str, target: str, details: dict[str, Any]
    ) -> None: ...

    def mail_committed(self) -> None:
        """Called after a transaction that may have queued mail commits."""
        ...


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME:
        raise BadRequest("tenancy.invalid_name", params={"max": MAX_NAME})
    return cleaned


class Tenancy:
    def __init__(self, db: Database, rbac: Rbac) -> None:
        self.db = db
        self.rbac = rbac
        self.directory: Directory | None = None

    # --- used by auth, inside its transactions -------------------------
    async def create_tenant(self, conn: Connection, *, name: str, owner_id: str, personal: bool) -> dict[str, Any]:
        tenant_id, now = new_id(), utcnow()
        name = _clean_name(name)
        await conn.execute(
            "INSERT INTO apprun_tenants (id, name, personal, created_by, policy_version, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, 1, $5, $5)",
            tenant_id,
            name,
            personal,
            owner_id,
            now,
        )
        await self.rbac.seed_tenant(conn, tenant_id)
        await self._insert_member(conn, tenant_id, owner_id, "owner", owner_id)
        return {"id": tenant_id, "name": name, "personal": personal, "role": "owner", "created_at": isoformat(now)}

    async def add_membership(
        self, conn: Connection, tenant_id: str, user_id: str, role: str, added_by: str | None
    ) -> None:
        """Add a member (an accepted invitation); an existing membership is kept as is."""
        if await self.role_of(conn, tenant_id, user_id) is not None:
            return
        if not await self.rbac.role_exists(conn, tenant_id, role):
            raise BadRequest("rbac.role_not_found", params={"name": role})
        await self._insert_member(conn, tenant_id, user_id, role, added_by)
        await self.rbac.bump(conn, tenant_id)

    async def sync_membership(self, conn: Connection, tenant_id: str, user_id: str, role: str) -> None:
        """Make ``user_id`` a member with exactly ``role`` (an external issuer's say-so)."""
        current = await self.role_of(conn, tenant_id, user_id)
        if current == role:
            return
        if current == "owner" and await self._owner_count(conn, tenant_id) <= 1:
            # The issuer would leave the tenant ownerless: the last owner stays owner.
            return
        if current is None:
            await self._insert_member(conn, tenant_id, user_id, role, None)
        else:
            await conn.execute(
                "UPDATE apprun_memberships SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
                role,
                utcnow(),
            )
        await self.rbac.bump(conn, tenant_id)

    async def role_of(self, conn: Connection, tenant_id: str, user_id: str) -> str | None:
        role = await conn.fetchval(
            "SELECT role FROM apprun_memberships WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id
        )
        return str(role) if role is not None else None

    async def first_tenant_of(self, conn: Connection, user_id: str) -> str | None:
        """The tenant a new session starts in: the personal one, else the oldest membership (active ones only)."""
        found = await conn.fetchval(
            "SELECT m.tenant_id FROM apprun_memberships m JOIN apprun_tenants t ON t.id = m.tenant_id "
            "WHERE m.user_id = $1 AND t.disabled_at IS NULL ORDER BY t.personal DESC, m.created_at, m.tenant_id "
            "LIMIT 1",
            user_id,
        )
        return str(found) if found is not None else None

    async def active_role_of(self, conn: Connection, tenant_id: str, user_id: str) -> str | None:
        """``user_id``'s role in ``tenant_id`` while that tenant is active; None if not a member or deactivated."""
        role = await conn.fetchval(
            "SELECT m.role FROM apprun_memberships m JOIN apprun_tenants t ON t.id = m.tenant_id "
            "WHERE m.tenant_id = $1 AND m.user_id = $2 AND t.disabled_at IS NULL",
            tenant_id,
            user_id,
        )
        return str(role) if role is not None else None

    async def is_disabled(self, conn: Connection, tenant_id: str) -> bool:
        disabled = await conn.fetchval("SELECT disabled_at FROM apprun_tenants WHERE id = $1", tenant_id)
        return disabled is not None

    async def tenant_to_resume(
        self, conn: Connection, user_id: str, tenant_id: str | None, *, platform_admin: bool
    ) -> str | None:
        """The tenant a refreshed session continues in.

        Its own while the tenant is active and the user still belongs to it (a
        platform admin need not: they may act in any tenant); otherwise — the
        member was removed, the tenant deactivated or deleted — where a new
        session would start (`first_tenant_of`), so a refresh token never
        brings a lost membership back.
        """
        if tenant_id is not None:
            if platform_admin:
                row = await conn.fetchrow("SELECT disabled_at FROM apprun_tenants WHERE id = $1", tenant_id)
                if row is not None and row["disabled_at"] is None:
                    return tenant_id
            elif await self.active_role_of(conn, tenant_id, user_id) is not None:
                return tenant_id
        return await self.first_tenant_of(conn, user_id)

    async def tenant_name(self, conn: Connection, tenant_id: str) -> str | None:
        name = await conn.fetchval("SELECT name FROM apprun_tenants WHERE id = $1", tenant_id)
        return str(name) if name is not None else None

    async def release_user(self, conn: Connection, user_id: str) -> None:
        """Before auth deletes ``user_id`` (in its transaction): the tenants they are the last owner of.

        A personal tenant goes with its owner; a shared one must keep an owner,
        so the deletion is refused (409 ``tenancy.last_owner``, naming the
        tenant). Their memberships go with the user (``ON DELETE CASCADE``).
        """
        owned = await conn.fetch(
            "SELECT t.id, (SELECT count(*) FROM apprun_memberships o "
            "WHERE o.tenant_id = t.id AND o.role = 'owner') "
            "AS owners, t.personal FROM apprun_tenants t JOIN apprun_memberships m ON m.tenant_id = t.id "
            "WHERE m.user_id = $1 AND m.role = 'owner'",
            user_id,
        )
        for tenant in owned:
            if int(tenant["owners"]) <= 1:
                if not tenant["personal"]:
                    raise Conflict("tenancy.last_owner", details={"tenant_id": tenant["id"]})
                await conn.execute("DELETE FROM apprun_tenants WHERE id = $1", tenant["id"])
                self.rbac.enforcers.forget(tenant["id"])

    async def role_assignments(self, conn: Connection, tenant_id: str) -> list[tuple[str, str]]:
        """RBAC's view of the members: (user id, role)."""
        rows = await conn.fetch("SELECT user_id, role FROM apprun_memberships WHERE tenant_id = $1", tenant_id)
        return [(r["user_id"], r["role"]) for r in rows]

    # --- the tenants API -----------------------------------------------
    async def create(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        user = self._user(ctx)
        async with self.db.transaction() as conn:
            tenant = await self.create_tenant(conn, name=name, owner_id=user, personal=False)
            await self._audit(conn, ctx, "tenant.created", tenant["id"], {"name": tenant["name"]})
        return tenant

    async def list_mine(self, ctx: RequestContext) -> list[dict[str, Any]]:
        user = self._user(ctx)
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT t.id, t.name, t.personal, t.created_at, t.disabled_at, m.role FROM apprun_memberships m "
                "JOIN apprun_tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 ORDER BY t.created_at, t.id",
                user,
            )
        return [
            {
                "id": r["id"],
                "name": r["name"],
                "personal": bool(r["personal"]),
                "role": r["role"],
                "active": r["id"] == ctx.tenant_id,
                "disabled": r["disabled_at"] is not None,
                "created_at": isoformat(to_datetime(r["created_at"])),
            }
            for r in rows
        ]

    async def get(self, ctx: RequestContext, tenant_id: str) -> dict[str, Any]:
        scoped = await self._in_tenant(ctx, tenant_id, "read", "tenant")
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, personal, created_at, updated_at, disabled_at FROM apprun_tenants WHERE id = $1",
                tenant_id,
            )
            role = await self.role_of(conn, tenant_id, scoped.user_id or "")
        if row is None:
            raise NotFound("tenancy.tenant_not_found")
        return {
            "id": row["id"],
            "name": row["name"],
            "personal": bool(row["personal"]),
            "role": role,
            "disabled": row["disabled_at"] is not None,
            "disabled_at": isoformat(to_datetime(row["disabled_at"])),
            "created_at": isoformat(to_datetime(row["created_at"])),
            "updated_at": isoformat(to_datetime(row["updated_at"])),
        }

    async def update(
        self, ctx: RequestContext, tenant_id: str, *, name: str | None, disabled: bool | None
    ) -> dict[str, Any]:
        """``PATCH``: deactivate or reactivate (platform admins), rename (``update`` on ``tenant``)."""
        if name is None and disabled is None:
            raise BadRequest("request.invalid", details={"field": "name"})
        if disabled is not None:
            await self.set_disabled(ctx, tenant_id, disabled=disabled)
        if name is not None:
            return await self.rename(ctx, tenant_id, name)
        return await self.get(ctx, tenant_id)

    async def set_disabled(self, ctx: RequestContext, tenant_id: str, *, disabled: bool) -> None:
        """Deactivate (every credential of the tenant stops working at once) or reactivate; platform admins only."""
        self._user_or_key(ctx)
        if not ctx.extra.get(PLATFORM_ADMIN):
            raise Forbidden("auth.platform_admin_only")
        now = utcnow()
        async with self.db.transaction() as conn:
            # Only a change is written (and audited): deactivating twice keeps the first time.
            changed = await conn.execute(
                _DEACTIVATE if disabled else _REACTIVATE,
                tenant_id,
                now if disabled else None,
                now,
            )
            if changed == 0:
                if await self.tenant_name(conn, tenant_id) is None:
                    raise NotFound("tenancy.tenant_not_found")
                return
            action = "tenant.deactivated" if disabled else "tenant.reactivated"
            await self._audit(conn, ctx, action, tenant_id, {"tenant_id": tenant_id})

    async def rename(self, ctx: RequestContext, tenant_id: str, name: str) -> dict[str, Any]:
        await self._in_tenant(ctx, tenant_id, "update", "tenant")
        name = _clean_name(name)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE apprun_tenants SET name = $2, updated_at = $3 WHERE id = $1", tenant_id, name, utcnow()
            )
            await self._audit(conn, ctx, "tenant.renamed", tenant_id, {"name": name})
        return await self.get(ctx, tenant_id)

    async def delete(self, ctx: RequestContext, tenant_id: str) -> None:
        await self._in_tenant(ctx, tenant_id, "delete", "tenant")
        async with self.db.transaction() as conn:
            await self._audit(conn, ctx, "tenant.deleted", tenant_id, {})
            await conn.execute("DELETE FROM apprun_tenants WHERE id = $1", tenant_id)
        self.rbac.enforcers.forget(tenant_id)

    # --- members -------------------------------------------------------
    async def list_members(self, ctx: RequestContext, tenant_id: str) -> list[dict[str, Any]]:
        await self._in_tenant(ctx, tenant_id, "read", "members")
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT user_id, role, created_at FROM apprun_memberships "
                "WHERE tenant_id = $1 ORDER BY created_at, user_id",
                tenant_id,
            )
            people = await self._directory().describe_users(conn, [r["user_id"] for r in rows])
        return [
            {
                "user_id": r["user_id"],
                "email": people.get(r["user_id"], {}).get("email"),
                "name": people.get(r["user_id"], {}).get("name"),
                "role": r["role"],
                "joined_at": isoformat(to_datetime(r["created_at"])),
            }
            for r in rows
        ]

    async def add_member(self, ctx: RequestContext, tenant_id: str, email: str, role: str) -> dict[str, Any]:
        """Mail an invitation to ``email``; a platform admin adds an existing user at once.

        Everyone else (service keys too: any user can make one for their own
        tenant) gets one answer, 201 ``"invited"``, with the same work behind
        it (a lookup, a token, a mail), whether or not the address has an
        account. Inviting a member again is 409 only for a caller who may read
        the members list, which shows it anyway; to anyone else it is one more
        invitation (accepting it changes nothing).
        """
        scoped = await self._in_tenant(ctx, tenant_id, "admin", "members")
        email = email.strip().lower()
        admin = bool(ctx.extra.get(PLATFORM_ADMIN))
        # Asked before the transaction: RBAC may read the policies on a connection of its own.
        sees_members = admin or (await self.rbac.authorize(scoped, "read", "members")).allowed
        directory = self._directory()
        async with self.db.transaction() as conn:
            if not await self.rbac.role_exists(conn, tenant_id, role):
                raise BadRequest("rbac.role_not_found", params={"name": role})
            await self._check_owner_change(conn, scoped, tenant_id, None, role)
            user_id = await directory.find_user_id(conn, email)
            # Asked for an unknown address too, so both cost the same queries.
            member = await self.role_of(conn, tenant_id, user_id or "") is not None
            if member and sees_members:
                raise Conflict("tenancy.already_member", params={"email": email})
            if admin and user_id is not None:
                await self._insert_member(conn, tenant_id, user_id, role, ctx.user_id)
                await self.rbac.bump(conn, tenant_id)
                await self._audit(conn, ctx, "member.added", user_id, {"tenant_id": tenant_id, "role": role})
                return {"user_id": user_id, "email": email, "role": role, "status": "added"}
            invitation = await directory.invite(
                conn,
                tenant_id=tenant_id,
                tenant_name=await self.tenant_name(conn, tenant_id) or "",
                email=email,
                role=role,
                inviter_id=ctx.user_id,
                locale=ctx.locale,
            )
            details = {"tenant_id": tenant_id, "role": role, "invitation_id": invitation}
            await self._audit(conn, ctx, "member.invited", email, details)
        directory.mail_committed()
        return {"email": email, "role": role, "status": "invited"}

    async def list_invitations(self, ctx: RequestContext, tenant_id: str) -> list[dict[str, Any]]:
        """Pending invitations: who may read the members list may read them."""
        await self._in_tenant(ctx, tenant_id, "read", "members")
        async with self.db.read() as conn:
            return await self._directory().pending_invitations(conn, tenant_id)

    async def revoke_invitation(self, ctx: RequestContext, tenant_id: str, invitation_id: str) -> None:
        """Withdraw a pending invitation (``admin`` on ``members``, as for adding one); its link stops working."""
        await self._in_tenant(ctx, tenant_id, "admin", "members")
        async with self.db.transaction() as conn:
            revoked = await self._directory().revoke_invitation(conn, tenant_id, invitation_id)
            if revoked is None:
                raise NotFound("tenancy.invitation_not_found")
            details = {"tenant_id": tenant_id, "email": revoked["email"], "role": revoked["role"]}
            await self._audit(conn, ctx, "invitation.revoked", invitation_id, details)

    async def change_role(self, ctx: RequestContext, tenant_id: str, user_id: str, role: str) -> dict[str, Any]:
        scoped = await self._in_tenant(ctx, tenant_id, "admin", "members")
        async with self.db.transaction() as conn:
            current = await self.role_of(conn, tenant_id, user_id)
            if current is None:
                raise NotFound("tenancy.member_not_found")
            if not await self.rbac.role_exists(conn, tenant_id, role):
                raise BadRequest("rbac.role_not_found", params={"name": role})
            await self._check_owner_change(conn, scoped, tenant_id, current, role)
            if current == "owner" and role != "owner":
                await self._keep_an_owner(conn, tenant_id)
            await conn.execute(
                "UPDATE apprun_memberships SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2",
                tenant_id,
                user_id,
                role,
                utcnow(),
            )
            await self.rbac.bump(conn, tenant_id)
            await self._audit(
                conn, ctx, "member.role_changed", user_id, {"tenant_id": tenant_id, "from": current, "to": role}
            )
        return {"user_id": user_id, "role": role}

    async def remove_member(self, ctx: RequestContext, tenant_id: str, user_id: str) -> None:
        if user_id == ctx.user_id:
            await self.leave(ctx, tenant_id)
            return
        scoped = await self._in_tenant(ctx, tenant_id, "admin", "members")
        async with self.db.transaction() as conn:
            current = await self.role_of(conn, tenant_id, user_id)
            if current is None:
                raise NotFound("tenancy.member_not_found")
            await self._check_owner_change(conn, scoped, tenant_id, current, None)
            await self._remove(conn, ctx, tenant_id, user_id, current)

    async def leave(self, ctx: RequestContext, tenant_id: str) -> None:
        user = self._user(ctx)
        async with self.db.transaction() as conn:
            current = await self.role_of(conn, tenant_id, user)
            if current is None:
                raise NotFound("tenancy.tenant_not_found")
            await self._remove(conn, ctx, tenant_id, user, current)

    # --- helpers -------------------------------------------------------
    async def _remove(self, conn: Connection, ctx: RequestContext, tenant_id: str, user_id: str, role: str) -> None:
        if role == "owner":
            await self._keep_an_owner(conn, tenant_id)
        await conn.execute("DELETE FROM apprun_memberships WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id)
        await self.rbac.bump(conn, tenant_id)
        await self._audit(conn, ctx, "member.removed", user_id, {"tenant_id": tenant_id, "role": role})

    async def _insert_member(self, conn: Connection, tenant_id: str, user_id: str, role: str, by: str | None) -> None:
        now = utcnow()
        await conn.execute(
            "INSERT INTO apprun_memberships (tenant_id, user_id, role, added_by, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $5)",
            tenant_id,
            user_id,
            role,
            by,
            now,
        )

    @staticmethod
    async def _owner_count(conn: Connection, tenant_id: str) -> int:
        owners = await conn.fetchval(
            "SELECT count(*) FROM apprun_memberships WHERE tenant_id = $1 AND role = 'owner'", tenant_id
        )
        return int(owners or 0)

    async def _keep_an_owner(self, conn: Connection, tenant_id: str) -> None:
        if await self._owner_count(conn, tenant_id) <= 1:
            raise Conflict("tenancy.last_owner")

    async def _check_owner_change(
        self, conn: Connection, ctx: RequestContext, tenant_id: str, current: str | None, new: str | None
    ) -> None:
        """Only owners (or the platform admin) make, unmake or remove owners."""
        if "owner" not in (current, new):
            return
        if ctx.extra.get("platform_admin") or ctx.auth_method == "service":
            return
        if await self.role_of(conn, tenant_id, ctx.user_id or "") != "owner":
            raise Forbidden("tenancy.owner_only")

    async def _in_tenant(self, ctx: RequestContext, tenant_id: str, action: str, obj: str) -> RequestContext:
        """``ctx`` re-scoped to ``tenant_id``, after checking the caller may act there.

        Non-members get 404 (the tenant's existence is not disclosed);
        members without the permission get 403.
        """
        self._user_or_key(ctx)
        if ctx.auth_method in ("api_key", "service") and ctx.tenant_id != tenant_id:
            raise NotFound("tenancy.tenant_not_found")
        scoped = ctx if ctx.tenant_id == tenant_id else self._rescope(ctx, tenant_id)
        decision = await self.rbac.authorize(scoped, action, obj)
        if not decision.allowed:
            if not decision.roles:
                raise NotFound("tenancy.tenant_not_found")
            raise Forbidden("auth.forbidden", details={"action": action, "object": obj, "reason": decision.reason})
        if action != "read" and not ctx.extra.get(PLATFORM_ADMIN):
            # A deactivated tenant is frozen: its members may look, only a platform admin may change it.
            async with self.db.read() as conn:
                if await self.is_disabled(conn, tenant_id):
                    raise Forbidden("tenancy.tenant_disabled")
        return scoped

    @staticmethod
    def _rescope(ctx: RequestContext, tenant_id: str) -> RequestContext:
        extra = {k: v for k, v in ctx.extra.items() if k != POLICY_VERSION}
        return dataclasses.replace(ctx, tenant_id=tenant_id, roles=(), extra=extra)

    @staticmethod
    def _user(ctx: RequestContext) -> str:
        if ctx.user_id is None:
            raise Unauthorized()
        return ctx.user_id

    @staticmethod
    def _user_or_key(ctx: RequestContext) -> None:
        if ctx.user_id is None and ctx.auth_method not in ("api_key", "service"):
            raise Unauthorized()

    def _directory(self) -> Directory:
        if self.directory is None:  # pragma: no cover - wiring error
            raise RuntimeError("tenancy.directory is not wired")
        return self.directory

    async def _audit(
        self, conn: Connection, ctx: RequestContext, action: str, target: str, details: dict[str, Any]
    ) -> None:
        if self.directory is not None:
            await self.directory.audit(conn, ctx, action, target, details)
