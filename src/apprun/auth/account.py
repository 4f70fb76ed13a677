"""A signed-in user's own account, password reset and email verification.

Password reset never says whether an email is known: ``recover`` answers
the same 202 either way and only mails known, enabled users. A reset or a
password change revokes the user's other sessions (all of them for a reset).
One-time tokens are stored hashed, single-use and short-lived; a new
password (reset or change) also retires every reset link still unused.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apprun.auth import audit
from apprun.auth.lockout import SignInLimits
from apprun.auth.mailer import MailDelivery
from apprun.auth.opaque import hash_token, new_token
from apprun.auth.passwords import PasswordPolicy, Passwords
from apprun.auth.sessions import Sessions
from apprun.auth.settings import AuthSettings
from apprun.auth.users import dump_data, normalize_email, user_by_email, user_by_id, user_view
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import BadRequest, Unauthorized
from apprun.kernel.i18n import to_bcp47
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow
from apprun.rbac.service import Rbac

__all__ = ["Account", "create_one_time_token", "use_one_time_token", "void_recover_tokens"]

RECOVER_TTL = 3600
INVITE_TTL = 7 * 86400


async def create_one_time_token(
    conn: Connection,
    *,
    kind: str,
    email: str,
    ttl_seconds: int,
    user_id: str | None = None,
    tenant_id: str | None = None,
    role: str | None = None,
    created_by: str | None = None,
    row_id: str | None = None,
) -> str:
    """A new single-use token; only its hash is stored (in a row with ``row_id``, if given)."""
    token, now = new_token(), utcnow()
    await conn.execute(
        "INSERT INTO apprun_one_time_tokens (id, kind, token_hash, user_id, email, tenant_id, role, created_by, "
        "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        row_id or new_id(),
        kind,
        hash_token(token),
        user_id,
        email,
        tenant_id,
        role,
        created_by,
        now,
        now + dt.timedelta(seconds=ttl_seconds),
    )
    return token


async def use_one_time_token(conn: Connection, kind: str, token: str) -> Any:
    """The token's row, marked used; 400 ``auth.invalid_token_link`` if unknown, used or expired."""
    row = await conn.fetchrow(
        "SELECT id, user_id, email, tenant_id, role, expires_at, used_at FROM apprun_one_time_tokens "
        "WHERE token_hash = $1 AND kind = $2",
        hash_token(token or ""),
        kind,
    )
    expires = to_datetime(row["expires_at"]) if row else None
    if row is None or row["used_at"] is not None or expires is None or expires <= utcnow():
        raise BadRequest("auth.invalid_token_link")
    # Conditional, so that of two concurrent uses (PostgreSQL reads committed
    # rows, both see it unused) only the one whose update lands wins.
    claimed = await conn.execute(
        "UPDATE apprun_one_time_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL", row["id"], utcnow()
    )
    if claimed != 1:
        raise BadRequest("auth.invalid_token_link")
    return row


async def void_recover_tokens(conn: Connection, user_id: str) -> None:
    """Retire the user's unused reset links: the password they were for has changed."""
    await conn.execute(
        "UPDATE apprun_one_time_tokens SET used_at = $2 WHERE user_id = $1 AND kind = 'recover' AND used_at IS NULL",
        user_id,
        utcnow(),
    )


class Account:
    def __init__(
        self,
        settings: AuthSettings,
        db: Database,
        *,
        passwords: Passwords,
        policy: PasswordPolicy,
        sessions: Sessions,
        mail: MailDelivery,
        rbac: Rbac,
        lockout: SignInLimits | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.passwords = passwords
        self.policy = policy
        self.sessions = sessions
        self.mail = mail
        self.rbac = rbac
        self.lockout = lockout

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.auth_site_url.rstrip('/')}{path}?token={token}"

    async def me(self, ctx: RequestContext) -> dict[str, Any]:
        user = _signed_in(ctx)
        async with self.db.read() as conn:
            row = await user_by_id(conn, user)
            roles = await self.rbac.roles_in(conn, ctx.tenant_id, user) if ctx.tenant_id else ()
        if row is None:
            raise Unauthorized("auth.session_revoked")
        view = user_view(row)
        view.update({"tenant_id": ctx.tenant_id, "roles": list(roles), "session_id": ctx.session_id})
        return view

    async def update_me(self, ctx: RequestContext, changes: dict[str, Any]) -> dict[str, Any]:
        user = _signed_in(ctx)
        allowed = {"name", "locale", "data"}
        unknown = set(changes) - allowed
        if unknown:
            # Email, password, admin and verification flags have flows of their own.
            raise BadRequest("request.read_only_fields", details={"fields": sorted(unknown)})
        sets: list[str] = []
        args: list[Any] = [user]
        if "name" in changes:
            name = changes["name"]
            if name is not None and (not isinstance(name, str) or len(name) > 200):
                raise BadRequest("request.invalid", details={"field": "name"})
            # Cleaned as at sign-up: the name goes into mail headers (an
            # invitation's subject), where a CR or LF must never arrive.
            cleaned = " ".join(name.split()) if isinstance(name, str) else None
            args.append(cleaned or None)
            sets.append(f"name = ${len(args)}")
        if "locale" in changes:
            locale = changes["locale"]
            if locale is not None and (not isinstance(locale, str) or len(locale) > 20):
                raise BadRequest("request.invalid", details={"field": "locale"})
            args.append(locale)
            sets.append(f"locale = ${len(args)}")
        if "data" in changes:
            args.append(dump_data(changes["data"]))
            sets.append(f"data = ${len(args)}")
        if sets:
            args.append(utcnow())
            sets.append(f"updated_at = ${len(args)}")
            async with self.db.transaction() as conn:
                await conn.execute(f"UPDATE apprun_users SET {', '.join(sets)} WHERE id = $1", *args)  # noqa: S608 - fixed column names
        return await self.me(ctx)

    async def change_password(self, ctx: RequestContext, current: str, new: str) -> None:
        user = _signed_in(ctx)
        async with self.db.read() as conn:
            row = await user_by_id(conn, user)
        if row is None:
            raise Unauthorized("auth.session_revoked")
        # A stolen access token must not buy unlimited guesses at the password: the
        # attempt counts like a sign-in's, for this account from this client address.
        if self.lockout is not None:
            await self.lockout.claim(row["email"], ctx.client_ip)
        check = await self.passwords.verify(row["password_hash"], current)
        if not check.ok:
            raise BadRequest("auth.invalid_credentials")
        if self.lockout is not None:
            await self.lockout.succeeded(row["email"], ctx.client_ip)
        self.policy.check(new, row["email"])
        new_hash = await self.passwords.hash(new)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE apprun_users SET password_hash = $2, updated_at = $3 WHERE id = $1", user, new_hash, utcnow()
            )
            await self.sessions.revoke_all(conn, user, "password_changed", except_session=ctx.session_id)
            await void_recover_tokens(conn, user)
            await audit.record(conn, "password.changed", ctx=ctx, target=user)

    async def recover(self, ctx: RequestContext, email: str) -> None:
        """Mail a reset link to a known user; the answer is the same for unknown ones."""
        self.mail.ensure_available()
        try:  # the same normalisation as sign-up, or a registered address would not be found
            address = normalize_email(email)
        except BadRequest:  # not even an address: answered like any unknown one
            address = email.strip().lower()[:320]
        async with self.db.transaction() as conn:
            row = await user_by_email(conn, address)
            if row is not None and row["disabled_at"] is None:
                token = await create_one_time_token(
                    conn, kind="recover", email=address, user_id=row["id"], ttl_seconds=RECOVER_TTL
                )
                await self.mail.queue(
                    conn,
                    to=address,
                    kind="recover",
                    locale=row["locale"] or ctx.locale,
                    params={"link": self._link("/auth/reset", token), "token": token, "minutes": RECOVER_TTL // 60},
                )
                await audit.record(conn, "password.reset_requested", ctx=ctx, actor_id=row["id"], target=address)
                queued = True
            else:
                queued = False
        if queued:
            self.mail.flush_soon()

    async def reset(self, ctx: RequestContext, token: str, new_password: str) -> None:
        async with self.db.read() as conn:
            probe = await conn.fetchrow(
                "SELECT email FROM apprun_one_time_tokens WHERE token_hash = $1 AND kind = 'recover'",
                hash_token(token or ""),
            )
        self.policy.check(new_password, probe["email"] if probe else None)
        new_hash = await self.passwords.hash(new_password)
        async with self.db.transaction() as conn:
            row = await use_one_time_token(conn, "recover", token)
            now = utcnow()
            await conn.execute(
                "UPDATE apprun_users SET password_hash = $2, updated_at = $3, "
                "email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $1",
                row["user_id"],
                new_hash,
                now,
            )
            await self.sessions.revoke_all(conn, row["user_id"], "password_reset")
            await void_recover_tokens(conn, row["user_id"])
            await audit.record(conn, "password.reset", ctx=ctx, actor_id=row["user_id"], target=row["email"])

    async def verify(self, ctx: RequestContext, token: str) -> None:
        async with self.db.transaction() as conn:
            row = await use_one_time_token(conn, "verify", token)
            await conn.execute(
                "UPDATE apprun_users SET email_verified_at = COALESCE(email_verified_at, $2) WHERE id = $1",
                row["user_id"],
                utcnow(),
            )
            await audit.record(conn, "email.verified", ctx=ctx, actor_id=row["user_id"], target=row["email"])

    async def resend_verification(self, ctx: RequestContext) -> None:
        user = _signed_in(ctx)
        self.mail.ensure_available()
        async with self.db.transaction() as conn:
            row = await user_by_id(conn, user)
            if row is None or row["email_verified_at"] is not None:
                return
            token = await create_one_time_token(
                conn, kind="verify", email=row["email"], user_id=user, ttl_seconds=86400
            )
            await self.mail.queue(
                conn,
                to=row["email"],
                kind="verify",
                locale=row["locale"] or ctx.locale,
                params={"link": self._link("/auth/verify", token), "token": token},
            )
        self.mail.flush_soon()

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
        """Mail an invitation to join ``tenant_id``; its id (used by tenancy through its Directory port).

        Whether or not ``email`` has an account: the link leads to a page of
        the site that signs in and accepts, or signs up with the token. A
        pending invitation of the same address to the same tenant is replaced,
        so the list holds one per person and only the newest link works.
        """
        await conn.execute(
            "DELETE FROM apprun_one_time_tokens WHERE kind = 'invite' AND tenant_id = $1 AND email = $2 "
            "AND used_at IS NULL",
            tenant_id,
            email,
        )
        invitation_id = new_id()
        token = await create_one_time_token(
            conn,
            kind="invite",
            email=email,
            tenant_id=tenant_id,
            role=role,
            created_by=inviter_id,
            ttl_seconds=INVITE_TTL,
            row_id=invitation_id,
        )
        inviter = await user_by_id(conn, inviter_id) if inviter_id else None
        await self.mail.queue(
            conn,
            to=email,
            kind="invite",
            locale=locale,
            params={
                "link": self._link("/auth/invitation", token),
                "token": token,
                "tenant": tenant_name,
                "inviter": (inviter["name"] or inviter["email"]) if inviter else "apprun",
                "role": role,
                "days": INVITE_TTL // 86400,
                "locale": to_bcp47(locale),
            },
        )
        return invitation_id

    async def pending_invitations(self, conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's invitations neither accepted, revoked nor expired, oldest first (never the token)."""
        rows = await conn.fetch(
            "SELECT id, email, role, created_by, created_at, expires_at FROM apprun_one_time_tokens "
            "WHERE kind = 'invite' AND tenant_id = $1 AND used_at IS NULL AND expires_at > $2 "
            "ORDER BY created_at, id",
            tenant_id,
            utcnow(),
        )
        return [
            {
                "id": r["id"],
                "email": r["email"],
                "role": r["role"],
                "invited_by": r["created_by"],
                "created_at": isoformat(to_datetime(r["created_at"])),
                "expires_at": isoformat(to_datetime(r["expires_at"])),
            }
            for r in rows
        ]

    async def revoke_invitation(self, conn: Connection, tenant_id: str, invitation_id: str) -> dict[str, Any] | None:
        """Delete a pending invitation of the tenant; it (email, role), or None if there is none."""
        row = await conn.fetchrow(
            "SELECT email, role FROM apprun_one_time_tokens "
            "WHERE id = $1 AND kind = 'invite' AND tenant_id = $2 AND used_at IS NULL",
            invitation_id,
            tenant_id,
        )
        # Conditional, so an acceptance that lands first keeps its membership and this one is 404.
        deleted = await conn.execute(
            "DELETE FROM apprun_one_time_tokens WHERE id = $1 AND kind = 'invite' AND tenant_id = $2 "
            "AND used_at IS NULL",
            invitation_id,
            tenant_id,
        )
        if row is None or deleted != 1:
            return None
        return {"email": row["email"], "role": row["role"]}

    def mail_committed(self) -> None:
        """Deliver mail queued by a transaction that just committed."""
        self.mail.flush_soon()

    async def find_user_id(self, conn: Connection, email: str) -> str | None:
        row = await user_by_email(conn, email)
        return str(row["id"]) if row is not None else None

    async def describe_users(self, conn: Connection, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(user_ids), 500):  # one query per 500 members
            chunk = user_ids[start : start + 500]
            marks = ", ".join(f"${i}" for i in range(1, len(chunk) + 1))
            rows = await conn.fetch(f"SELECT id, email, name FROM apprun_users WHERE id IN ({marks})", *chunk)  # noqa: S608 - placeholders only
            out.update({r["id"]: {"email": r["email"], "name": r["name"]} for r in rows})
        return out

    async def audit(
        self, conn: Connection, ctx: RequestContext, action: str, target: str, details: dict[str, Any]
    ) -> None:
        tenant = details.get("tenant_id")
        await audit.record(
            conn,
            action,
            ctx=ctx,
            tenant_id=tenant if isinstance(tenant, str) else None,
            target=target,
            details=details,
        )


def _signed_in(ctx: RequestContext) -> str:
    if ctx.user_id is None:
        raise Unauthorized()
    return ctx.user_id
