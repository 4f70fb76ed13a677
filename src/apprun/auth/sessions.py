"""Sessions and refresh-token rotation.

A session is one signed-in device and one refresh-token family. Each refresh
token is single-use: refreshing marks it used and hands out its child. If a
used token comes back after the grace window (or after its child was used
too), someone replayed a stolen token: the whole session is revoked, so the
newest token of the family stops working as well, and the event is audited.
Within the grace window a retry of the same token (two tabs refreshing at
once) gets the same child token again, because children are derived from
their parent (see `apprun.auth.opaque`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from apprun.auth import audit
from apprun.auth.opaque import derive_child, hash_token, new_token
from apprun.auth.tokens import TokenKeys
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.errors import Unauthorized
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow

__all__ = ["Rotation", "Sessions", "TokenPair"]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_at: int
    refresh_token: str
    session_id: str
    tenant_id: str | None
    roles: tuple[str, ...]

    def to_dict(self, ttl: int, user: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": ttl,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "session_id": self.session_id,
            "tenant_id": self.tenant_id,
            "roles": list(self.roles),
        }
        if user is not None:
            body["user"] = user
        return body


@dataclass(frozen=True, slots=True)
class Rotation:
    """Outcome of presenting a refresh token."""

    user_id: str | None = None
    session_id: str | None = None
    tenant_id: str | None = None
    child: str | None = None
    reused: bool = False


class Sessions:
    def __init__(self, keys: TokenKeys, *, session_ttl: int, grace: int, refresh_key: bytes) -> None:
        self.keys = keys
        self.session_ttl = session_ttl
        self.grace = grace
        self.refresh_key = refresh_key

    async def open(
        self,
        conn: Connection,
        *,
        user_id: str,
        tenant_id: str | None,
        method: str,
        ip: str | None,
        user_agent: str | None,
    ) -> tuple[str, str]:
        """A new session and the first refresh token of its family."""
        session_id, now = new_id(), utcnow()
        await conn.execute(
            "INSERT INTO apprun_sessions (id, user_id, tenant_id, auth_method, ip, user_agent, created_at, "
            "last_used_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
            session_id,
            user_id,
            tenant_id,
            method,
            ip,
            (user_agent or "")[:400] or None,
            now,
            now + dt.timedelta(seconds=self.session_ttl),
        )
        token = new_token()
        await self._insert_refresh(conn, session_id, token, parent_id=None)
        return session_id, token

    async def _insert_refresh(self, conn: Connection, session_id: str, token: str, parent_id: str | None) -> None:
        await conn.execute(
            "INSERT INTO apprun_refresh_tokens (id, session_id, token_hash, parent_id, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            new_id(),
            session_id,
            hash_token(token),
            parent_id,
            utcnow(),
        )

    async def rotate(self, conn: Connection, token: str, ip: str | None, user_agent: str | None) -> Rotation:
        """Use a refresh token once; detect replays. Call inside a write transaction."""
        lock = " FOR UPDATE" if conn.dialect == "postgres" else ""
        row = await conn.fetchrow(
            f"SELECT id, session_id, used_at FROM apprun_refresh_tokens WHERE token_hash = $1{lock}",  # noqa: S608
            hash_token(token),
        )
        if row is None:
            raise Unauthorized("auth.invalid_refresh_token")
        session = await conn.fetchrow(
            "SELECT s.id, s.user_id, s.tenant_id, s.revoked_at, s.expires_at, u.disabled_at "
            "FROM apprun_sessions s JOIN apprun_users u ON u.id = s.user_id WHERE s.id = $1",
            row["session_id"],
        )
        now = utcnow()
        expires = to_datetime(session["expires_at"]) if session else None
        if (
            session is None
            or session["revoked_at"] is not None
            or session["disabled_at"] is not None
            or (expires is not None and expires <= now)
        ):
            raise Unauthorized("auth.session_expired")
        child = derive_child(token, self.refresh_key)
        used_at = to_datetime(row["used_at"])
        if used_at is None:
            await conn.execute("UPDATE apprun_refresh_tokens SET used_at = $2 WHERE id = $1", row["id"], now)
            await self._insert_refresh(conn, session["id"], child, parent_id=row["id"])
        else:
            sibling = await conn.fetchrow(
                "SELECT used_at FROM apprun_refresh_tokens WHERE token_hash = $1", hash_token(child)
            )
            within_grace = (now - used_at).total_seconds() <= self.grace
            if not (within_grace and sibling is not None and sibling["used_at"] is None):
                await self.revoke(conn, session["id"], "token_reuse")
                return Rotation(user_id=session["user_id"], session_id=session["id"], reused=True)
        await conn.execute(
            "UPDATE apprun_sessions SET last_used_at = $2, ip = COALESCE($3, ip), "
            "user_agent = COALESCE($4, user_agent) WHERE id = $1",
            session["id"],
            now,
            ip,
            (user_agent or "")[:400] or None,
        )
        return Rotation(
            user_id=session["user_id"], session_id=session["id"], tenant_id=session["tenant_id"], child=child
        )

    async def issue(
        self,
        *,
        user_id: str,
        email: str | None,
        session_id: str,
        tenant_id: str | None,
        roles: tuple[str, ...],
        refresh_token: str,
    ) -> TokenPair:
        access, exp = self.keys.issue(
            user_id=user_id, session_id=session_id, tenant_id=tenant_id, roles=list(roles), email=email
        )
        return TokenPair(
            access_token=access,
            expires_at=exp,
            refresh_token=refresh_token,
            session_id=session_id,
            tenant_id=tenant_id,
            roles=roles,
        )

    @staticmethod
    async def move(conn: Connection, session_id: str, tenant_id: str | None) -> None:
        """Make ``tenant_id`` the session's tenant (a tenant switch, or a refresh that lost its tenant)."""
        await conn.execute("UPDATE apprun_sessions SET tenant_id = $2 WHERE id = $1", session_id, tenant_id)

    async def new_head(self, conn: Connection, session_id: str) -> str:
        """A fresh refresh token in an existing session (after a tenant switch)."""
        token = new_token()
        await self._insert_refresh(conn, session_id, token, parent_id=None)
        return token

    @staticmethod
    async def revoke(conn: Connection, session_id: str, reason: str) -> None:
        await conn.execute(
            "UPDATE apprun_sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
            session_id,
            utcnow(),
            reason,
        )

    @staticmethod
    async def revoke_all(conn: Connection, user_id: str, reason: str, *, except_session: str | None = None) -> int:
        return await conn.execute(
            "UPDATE apprun_sessions SET revoked_at = $2, revoked_reason = $3 "
            "WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4",
            user_id,
            utcnow(),
            reason,
            except_session or "",
        )

    @staticmethod
    async def list_for(conn: Connection, user_id: str, current: str | None) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT id, tenant_id, auth_method, ip, user_agent, created_at, last_used_at, expires_at "
            "FROM apprun_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 "
            "ORDER BY last_used_at DESC",
            user_id,
            utcnow(),
        )
        return [
            {
                "id": r["id"],
                "current": r["id"] == current,
                "tenant_id": r["tenant_id"],
                "auth_method": r["auth_method"],
                "ip": r["ip"],
                "user_agent": r["user_agent"],
                "created_at": isoformat(to_datetime(r["created_at"])),
                "last_used_at": isoformat(to_datetime(r["last_used_at"])),
                "expires_at": isoformat(to_datetime(r["expires_at"])),
            }
            for r in rows
        ]

    @staticmethod
    async def audit_reuse(conn: Connection, rotation: Rotation, ctx: RequestContext) -> None:
        await audit.record(
            conn,
            "token.reused",
            ctx=ctx,
            actor_id=rotation.user_id,
            target=rotation.session_id,
            details={"revoked_session": rotation.session_id},
        )
