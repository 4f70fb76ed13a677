"""Sign-up, sign-in, refresh, sign-out, tenant switching and sessions.

Everything a flow changes — the user, their personal tenant and its seeded
roles, the session, the first refresh token, the audit record, the queued
verification mail — is written in one transaction, so a failure leaves
nothing half-done. Password hashing happens before the transaction opens
(it takes tens of milliseconds and must not hold the write lock).

Protection, as the security checklist asks: an unknown email and a wrong
password get the same status, body and (through a dummy hash) similar
latency; password attempts are counted per account and client address and
per account (`apprun.auth.lockout`), every auth request per client IP,
answering 429 with ``Retry-After`` past the limits. Sign-up does not tell
who is registered unless ``AUTH_REGISTER_REVEALS_EXISTING`` allows it (see
`Auth.register`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from apprun.auth import audit
from apprun.auth.account import create_one_time_token
from apprun.auth.lockout import SignInLimits
from apprun.auth.mailer import MailDelivery
from apprun.auth.opaque import hash_token
from apprun.auth.passwords import PasswordPolicy, Passwords
from apprun.auth.sessions import Rotation, Sessions, TokenPair
from apprun.auth.settings import AuthSettings
from apprun.auth.users import insert_user, normalize_email, user_by_email, user_by_id, user_view
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database, Row
from apprun.kernel.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    UniqueViolation,
)
from apprun.kernel.i18n import to_bcp47
from apprun.kernel.ids import new_id
from apprun.kernel.ratelimit import Limit, RateLimiter, enforce
from apprun.kernel.times import to_datetime, utcnow
from apprun.rbac.service import Rbac
from apprun.tenancy.service import Tenancy

__all__ = ["Auth", "Client"]


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request comes from, for sessions, limits and the audit log."""

    ip: str | None
    user_agent: str | None
    locale: str


class Auth:
    def __init__(
        self,
        settings: AuthSettings,
        db: Database,
        *,
        passwords: Passwords,
        sessions: Sessions,
        tenancy: Tenancy,
        rbac: Rbac,
        mail: MailDelivery,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.db = db
        self.passwords = passwords
        self.policy = PasswordPolicy.from_file(settings.auth_password_min_length, settings.auth_password_blocklist_file)
        self.sessions = sessions
        self.tenancy = tenancy
        self.rbac = rbac
        self.mail = mail
        self.limiter = limiter
        self.ip_limit = Limit.parse(settings.auth_rate_limit_ip)
        #: The lockout, shared with password changes (`Account`).
        self.sign_in_limits = SignInLimits.from_settings(settings, limiter)

    @property
    def access_ttl(self) -> int:
        return self.settings.auth_access_ttl

    # --- limits ----------------------------------------------------------
    async def limit_ip(self, client: Client, endpoint: str) -> None:
        """Count one auth request from this client address (429 past the limit).

        One budget covers every auth endpoint (``endpoint`` is for the log), so
        probing with register, recover and login together gets no extra tries.
        """
        del endpoint
        await enforce(self.limiter, f"auth:ip:{client.ip or 'unknown'}", self.ip_limit)

    # --- sign-up ---------------------------------------------------------
    async def register(
        self,
        *,
        email: str,
        password: str,
        name: str | None,
        invite_token: str | None,
        client: Client,
        ctx: RequestContext,
    ) -> dict[str, Any]:
        """A new account; a registered address gets 409 or, hidden, the answer a new one gets.

        Hidden when email verification is required, or when it is not and
        ``AUTH_REGISTER_REVEALS_EXISTING`` is off (the prod default): then no
        sign-up returns tokens, since a registered address could not get any
        (docs/auth.md, "Registration answers", has the trade-off).
        """
        email = normalize_email(email)
        if not self.settings.auth_signup_enabled and not invite_token:
            raise Forbidden("auth.signup_disabled")
        self.policy.check(password, email)
        if self.settings.auth_require_email_verification:
            self.mail.ensure_available()
        # Hashed whether or not the address is taken: both answers cost the same argon2 work.
        password_hash = await self.passwords.hash(password)
        # An invitation already proves the address: no verification mail then.
        verify_mail = self.mail.backend != "none" and not invite_token
        # Whether a registered address is answered 409 or exactly like a new one (docs/auth.md,
        # "Registration answers"). An invitation's holder has proved the address: they may be told.
        hide = not invite_token and (
            self.settings.auth_require_email_verification or not self.settings.register_reveals_existing
        )
        attempt = functools.partial(
            self._register,
            email,
            password_hash,
            name=name,
            invite_token=invite_token,
            client=client,
            ctx=ctx,
            verify_mail=verify_mail,
            hide=hide,
        )
        try:
            return await attempt()
        except UniqueViolation:
            # Two sign-ups with one address at once: the loser gets what a later one would.
            if not hide:
                raise Conflict("auth.email_taken") from None
            return await attempt()

    async def _register(
        self,
        email: str,
        password_hash: str,
        *,
        name: str | None,
        invite_token: str | None,
        client: Client,
        ctx: RequestContext,
        verify_mail: bool,
        hide: bool,
    ) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            existing = await user_by_email(conn, email)
            if existing is not None:
                return await self._already_registered(
                    conn, existing, invite_token=invite_token, hide=hide, name=name, client=client, ctx=ctx
                )
            user_id = await insert_user(
                conn, email=email, password_hash=password_hash, name=_clean_name(name), locale=to_bcp47(client.locale)
            )
            if invite_token:
                tenant_id = await self._accept_invite(conn, invite_token, email, user_id, ctx=ctx)
            else:
                label = _clean_name(name) or email.split("@", 1)[0]
                tenant = await self.tenancy.create_tenant(
                    conn, name=f"{label}'s workspace", owner_id=user_id, personal=True
                )
                tenant_id = tenant["id"]
            await audit.record(conn, "user.registered", ctx=ctx, tenant_id=tenant_id, actor_id=user_id, target=email)
            if verify_mail:
                await self._queue_verification(conn, user_id, email, client.locale)
            pair = None
            # Hidden, no sign-up gets tokens: a taken address could not get them (its answer must match).
            if not self.settings.auth_require_email_verification and not hide:
                pair = await self._sign_in(conn, user_id, email, tenant_id, method="password", client=client)
            row = await user_by_id(conn, user_id)
        if verify_mail:
            self.mail.flush_soon()
        if row is None:  # pragma: no cover - inserted in this very transaction
            raise Unauthorized("auth.session_expired")
        if pair is None:
            return {"user": user_view(row), "verification_required": self.settings.auth_require_email_verification}
        return pair.to_dict(self.access_ttl, user_view(row))

    async def _already_registered(
        self,
        conn: Connection,
        existing: Row,
        *,
        invite_token: str | None,
        hide: bool,
        name: str | None,
        client: Client,
        ctx: RequestContext,
    ) -> dict[str, Any]:
        """A sign-up with a registered address: 409, or the answer a new address gets (``hide``).

        Hidden, the address's owner is told by mail instead (if mail can be
        sent), and the reply describes an account that does not exist: the
        same fields as a new one's, with a fresh id, and nothing of the real
        account. The work matches too: the password was hashed, and one
        transaction writes the notice and the audit record.
        """
        email = str(existing["email"])
        if not hide:
            if invite_token:  # a forged or used invitation learns nothing: the 400 a new address gets
                await self._valid_invite(conn, invite_token, email)
            raise Conflict("auth.email_taken")
        await audit.record(conn, "user.register_existing", ctx=ctx, target=email, user_agent=client.user_agent)
        if self.mail.backend != "none":
            await self.mail.queue(
                conn,
                to=email,
                kind="account_exists",
                locale=existing["locale"] or client.locale,
                params={"link": self.settings.auth_site_url},
            )
            conn.on_commit(self.mail.flush_soon)
        return {
            "user": _decoy_view(email, name, client.locale),
            "verification_required": self.settings.auth_require_email_verification,
        }

    async def accept_invitation(self, ctx: RequestContext, token: str) -> dict[str, Any]:
        """A signed-in user joins the tenant their invitation names; the reply says which.

        The token proves the address, so it must be the user's own address's
        invitation: anyone else's, like a used, expired or revoked one, is the
        same 400 ``auth.invalid_invitation``. The session stays where it is;
        the client switches with ``POST /auth/tenant``.
        """
        user = _signed_in(ctx)
        async with self.db.transaction() as conn:
            row = await user_by_id(conn, user)
            if row is None:
                raise Unauthorized("auth.session_revoked")
            tenant_id = await self._accept_invite(conn, token, str(row["email"]), user, ctx=ctx)
            role = await self.tenancy.role_of(conn, tenant_id, user)
            name = await self.tenancy.tenant_name(conn, tenant_id)
        return {"tenant_id": tenant_id, "tenant_name": name, "role": role}

    async def _accept_invite(
        self, conn: Connection, token: str, email: str, user_id: str, *, ctx: RequestContext
    ) -> str:
        invite = await self._valid_invite(conn, token, email)
        tenant_id = str(invite["tenant_id"])
        if await self.tenancy.is_disabled(conn, tenant_id):
            # A deactivated tenant's members are frozen; the invitation stays unused for when it is back.
            raise Forbidden("auth.tenant_disabled")
        # Conditional, so two acceptances racing for one invitation cannot both use it.
        used = await conn.execute(
            "UPDATE apprun_one_time_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL", invite["id"], utcnow()
        )
        if used != 1:
            raise BadRequest("auth.invalid_invitation")
        await self.tenancy.add_membership(conn, tenant_id, user_id, invite["role"], invite["created_by"])
        # Following the link in the invitation proves the address.
        await conn.execute(
            "UPDATE apprun_users SET email_verified_at = COALESCE(email_verified_at, $2) WHERE id = $1",
            user_id,
            utcnow(),
        )
        by_invitee = functools.partial(audit.record, conn, ctx=ctx, tenant_id=tenant_id, actor_id=user_id)
        details = {"tenant_id": tenant_id, "role": invite["role"], "email": email, "invited_by": invite["created_by"]}
        await by_invitee("invitation.accepted", target=invite["id"], details=details)
        # Also the event subscribers of member changes know: the membership starts now.
        details = {"tenant_id": tenant_id, "role": invite["role"], "invitation_id": invite["id"]}
        await by_invitee("member.added", target=user_id, details=details)
        return tenant_id

    async def _valid_invite(self, conn: Connection, token: str, email: str) -> Row:
        """The unused, unexpired invitation of ``email`` with this token, or 400 ``auth.invalid_invitation``."""
        invite = await conn.fetchrow(
            "SELECT id, email, tenant_id, role, created_by, expires_at, used_at FROM apprun_one_time_tokens "
            "WHERE token_hash = $1 AND kind = 'invite'",
            hash_token(token),
        )
        expires = to_datetime(invite["expires_at"]) if invite else None
        if (
            invite is None
            or invite["used_at"] is not None
            or expires is None
            or expires <= utcnow()
            or invite["email"] != email
            or invite["tenant_id"] is None
        ):
            raise BadRequest("auth.invalid_invitation")
        return invite

    async def _queue_verification(self, conn: Connection, user_id: str, email: str, locale: str) -> None:
        token = await create_one_time_token(conn, kind="verify", email=email, user_id=user_id, ttl_seconds=86400)
        await self.mail.queue(
            conn,
            to=email,
            kind="verify",
            locale=locale,
            params={"link": f"{self.settings.auth_site_url.rstrip('/')}/auth/verify?token={token}", "token": token},
        )

    # --- sign-in ---------------------------------------------------------
    async def login(self, *, email: str, password: str, client: Client, ctx: RequestContext) -> dict[str, Any]:
        try:
            email = normalize_email(email)
        except BadRequest:
            email = email.strip().lower()[:320]
        await self.sign_in_limits.claim(email, client.ip)
        async with self.db.read() as conn:
            row = await user_by_email(conn, email)
        verification = await self.passwords.verify(row["password_hash"] if row else None, password)
        if row is None or not verification.ok:
            async with self.db.transaction() as conn:
                await audit.record(
                    conn,
                    "login.failed",
                    ctx=ctx,
                    actor_id=row["id"] if row else None,
                    target=email,
                    user_agent=client.user_agent,
                )
            raise BadRequest("auth.invalid_credentials")
        await self.sign_in_limits.succeeded(email, client.ip)
        if row["disabled_at"] is not None:
            raise Forbidden("auth.user_disabled")
        if self.settings.auth_require_email_verification and row["email_verified_at"] is None:
            raise Forbidden("auth.email_not_verified")
        async with self.db.transaction() as conn:
            now = utcnow()
            if verification.new_hash:
                await conn.execute(
                    "UPDATE apprun_users SET password_hash = $2 WHERE id = $1", row["id"], verification.new_hash
                )
            await conn.execute("UPDATE apprun_users SET last_login_at = $2 WHERE id = $1", row["id"], now)
            tenant_id = await self.tenancy.first_tenant_of(conn, row["id"])
            pair = await self._sign_in(conn, row["id"], row["email"], tenant_id, method="password", client=client)
            await audit.record(
                conn,
                "login.succeeded",
                ctx=ctx,
                tenant_id=tenant_id,
                actor_id=row["id"],
                target=pair.session_id,
                user_agent=client.user_agent,
            )
            fresh = await user_by_id(conn, row["id"])
        if fresh is None:  # pragma: no cover - deleted while signing in
            raise Unauthorized("auth.session_expired")
        return pair.to_dict(self.access_ttl, user_view(fresh))

    async def sign_in_user(
        self, conn: Connection, user_id: str, email: str, tenant_id: str | None, *, method: str, client: Client
    ) -> TokenPair:
        """A new session for an already authenticated user (bridges, social login)."""
        return await self._sign_in(conn, user_id, email, tenant_id, method=method, client=client)

    async def _sign_in(
        self, conn: Connection, user_id: str, email: str, tenant_id: str | None, *, method: str, client: Client
    ) -> TokenPair:
        session_id, refresh = await self.sessions.open(
            conn, user_id=user_id, tenant_id=tenant_id, method=method, ip=client.ip, user_agent=client.user_agent
        )
        roles = await self.rbac.roles_in(conn, tenant_id, user_id) if tenant_id else ()
        return await self.sessions.issue(
            user_id=user_id, email=email, session_id=session_id, tenant_id=tenant_id, roles=roles, refresh_token=refresh
        )

    # --- refresh ---------------------------------------------------------
    async def refresh(self, *, refresh_token: str, client: Client, ctx: RequestContext) -> dict[str, Any]:
        if not refresh_token or len(refresh_token) > 200:
            raise Unauthorized("auth.invalid_refresh_token")
        row: Row | None = None
        roles: tuple[str, ...] = ()
        async with self.db.transaction() as conn:
            rotation = await self.sessions.rotate(conn, refresh_token, client.ip, client.user_agent)
            if rotation.reused:
                await self.sessions.audit_reuse(conn, rotation, ctx)
            else:
                row = await user_by_id(conn, rotation.user_id or "")
                rotation = await self._resume_tenant(conn, rotation, row)
                roles = (
                    await self.rbac.roles_in(conn, rotation.tenant_id, rotation.user_id or "")
                    if rotation.tenant_id
                    else ()
                )
        if rotation.reused:
            # Raised after the commit: the family's revocation must stick.
            raise Unauthorized("auth.refresh_token_reused")
        if row is None or rotation.session_id is None or rotation.child is None:
            raise Unauthorized("auth.session_expired")
        pair = await self.sessions.issue(
            user_id=row["id"],
            email=row["email"],
            session_id=rotation.session_id,
            tenant_id=rotation.tenant_id,
            roles=roles,
            refresh_token=rotation.child,
        )
        return pair.to_dict(self.access_ttl, user_view(row))

    async def _resume_tenant(self, conn: Connection, rotation: Rotation, user: Row | None) -> Rotation:
        """A refresh never brings back a lost tenant: removed, deactivated or deleted, the session moves on.

        It continues where a new sign-in would start (the personal tenant, else
        the oldest active membership; no tenant if none), rather than failing:
        the holder of the refresh token could sign in again and land there anyway.
        """
        if user is None or rotation.session_id is None:
            return rotation
        platform_admin = bool(user["is_platform_admin"])
        tenant_id = await self.tenancy.tenant_to_resume(
            conn, str(user["id"]), rotation.tenant_id, platform_admin=platform_admin
        )
        if tenant_id == rotation.tenant_id:
            return rotation
        await self.sessions.move(conn, rotation.session_id, tenant_id)
        return dataclasses.replace(rotation, tenant_id=tenant_id)

    # --- sign-out, sessions ------------------------------------------------
    async def logout(self, ctx: RequestContext, scope: str) -> None:
        user = _signed_in(ctx)
        if scope not in ("local", "global", "others"):
            raise BadRequest("auth.invalid_logout_scope")
        async with self.db.transaction() as conn:
            if scope == "local":
                if ctx.session_id:
                    await self.sessions.revoke(conn, ctx.session_id, "logout")
            else:
                keep = ctx.session_id if scope == "others" else None
                await self.sessions.revoke_all(conn, user, "logout", except_session=keep)
            await audit.record(conn, "session.logout", ctx=ctx, target=ctx.session_id, details={"scope": scope})

    async def list_sessions(self, ctx: RequestContext) -> list[dict[str, Any]]:
        user = _signed_in(ctx)
        async with self.db.read() as conn:
            return await self.sessions.list_for(conn, user, ctx.session_id)

    async def revoke_session(self, ctx: RequestContext, session_id: str) -> None:
        user = _signed_in(ctx)
        async with self.db.transaction() as conn:
            owner = await conn.fetchval("SELECT user_id FROM apprun_sessions WHERE id = $1", session_id)
            if owner != user:
                raise NotFound("auth.session_not_found")
            await self.sessions.revoke(conn, session_id, "revoked_by_user")
            await audit.record(conn, "session.revoked", ctx=ctx, target=session_id)

    # --- the active tenant -------------------------------------------------
    async def switch_tenant(self, ctx: RequestContext, tenant_id: str) -> dict[str, Any]:
        user = _signed_in(ctx)
        if ctx.session_id is None:
            raise BadRequest("auth.no_session")
        async with self.db.transaction() as conn:
            if await self.tenancy.active_role_of(conn, tenant_id, user) is None:
                if await self.tenancy.role_of(conn, tenant_id, user) is not None:
                    raise Forbidden("auth.tenant_disabled")
                raise NotFound("tenancy.tenant_not_found")
            await conn.execute("UPDATE apprun_sessions SET tenant_id = $2 WHERE id = $1", ctx.session_id, tenant_id)
            refresh = await self.sessions.new_head(conn, ctx.session_id)
            roles = await self.rbac.roles_in(conn, tenant_id, user)
            row = await user_by_id(conn, user)
            await audit.record(conn, "session.tenant_switched", ctx=ctx, tenant_id=tenant_id, target=ctx.session_id)
        if row is None:  # pragma: no cover - the caller's own row
            raise Unauthorized("auth.session_revoked")
        pair = await self.sessions.issue(
            user_id=user,
            email=row["email"],
            session_id=ctx.session_id,
            tenant_id=tenant_id,
            roles=roles,
            refresh_token=refresh,
        )
        return pair.to_dict(self.access_ttl, user_view(row))


def _signed_in(ctx: RequestContext) -> str:
    if ctx.user_id is None:
        raise Unauthorized()
    return ctx.user_id


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = " ".join(name.split())[:200]
    return cleaned or None


def _decoy_view(email: str, name: str | None, locale: str) -> dict[str, Any]:
    """A new account's view for an address that already has one: the same fields, none of its values."""
    now = utcnow()
    fields = {
        "id": new_id(),
        "email": email,
        "name": _clean_name(name),
        "locale": to_bcp47(locale),
        "data": None,
        "is_platform_admin": False,
        "email_verified_at": None,
        "disabled_at": None,
        "last_login_at": None,
        "created_at": now,
        "updated_at": now,
    }
    return user_view(fields)
