"""The audit log: security events, written in the transaction of the change.

Most of them are also platform events (``apprun.user.registered``,
``apprun.user.login_failed``, ``apprun.tenant.member_added`` …), emitted
through the events outbox in the same transaction, so subscribers and
webhooks hear of them exactly when they happened.

Actions are dotted names: ``user.registered``, ``login.succeeded``,
``login.failed``, ``token.reused``, ``session.revoked``,
``password.changed``, ``password.reset``, ``member.added``,
``member.role_changed``, ``api_key.created`` … Tenant admins read their
tenant's events (``read`` on ``audit``); platform admins read all.
"""

from __future__ import annotations

import json
from typing import Any

from apprun.events.envelope import make_event
from apprun.events.outbox import emit
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow

__all__ = ["PLATFORM_EVENTS", "actor_of", "audit_view", "record"]

#: Audit actions that are also platform events, and the event type of each.
PLATFORM_EVENTS = {
    "user.registered": "apprun.user.registered",
    "user.created": "apprun.user.created",
    "user.updated": "apprun.user.updated",
    "user.deleted": "apprun.user.deleted",
    "login.succeeded": "apprun.user.logged_in",
    "login.failed": "apprun.user.login_failed",
    "email.verified": "apprun.user.email_verified",
    "password.changed": "apprun.user.password_changed",
    "password.reset": "apprun.user.password_reset",
    "token.reused": "apprun.session.token_reused",
    "tenant.created": "apprun.tenant.created",
    "tenant.renamed": "apprun.tenant.renamed",
    "tenant.deleted": "apprun.tenant.deleted",
    "tenant.deactivated": "apprun.tenant.deactivated",
    "tenant.reactivated": "apprun.tenant.reactivated",
    "member.added": "apprun.tenant.member_added",
    "member.invited": "apprun.tenant.member_invited",
    "invitation.accepted": "apprun.tenant.invitation_accepted",
    "invitation.revoked": "apprun.tenant.invitation_revoked",
    "member.role_changed": "apprun.tenant.member_role_changed",
    "member.removed": "apprun.tenant.member_removed",
    "api_key.created": "apprun.api_key.created",
    "api_key.revoked": "apprun.api_key.revoked",
}


def actor_of(ctx: RequestContext | None) -> tuple[str | None, str]:
    if ctx is None:
        return None, "system"
    if ctx.auth_method in ("api_key", "service"):
        return str(ctx.extra.get("api_key_id")), "api_key"
    if ctx.user_id:
        return ctx.user_id, "user"
    return None, "anonymous"


async def record(
    conn: Connection,
    action: str,
    *,
    ctx: RequestContext | None = None,
    tenant_id: str | None = None,
    actor_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    user_agent: str | None = None,
) -> None:
    """Append one event (tenant and actor default to the request's)."""
    ctx_actor, actor_type = actor_of(ctx)
    tenant = tenant_id if tenant_id is not None else (ctx.tenant_id if ctx else None)
    actor = actor_id or ctx_actor
    await conn.execute(
        "INSERT INTO apprun_audit_log (id, tenant_id, actor_id, actor_type, action, target, ip, user_agent, "
        "details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        new_id(),
        tenant,
        actor,
        "user" if actor_id else actor_type,
        action,
        target,
        ctx.client_ip if ctx else None,
        (user_agent or "")[:400] or None,
        json.dumps(details or {}, separators=(",", ":"), default=str),
        utcnow(),
    )
    event_type = PLATFORM_EVENTS.get(action)
    if event_type is not None:
        data = {"actor_id": actor, "target": target, **(details or {})}
        await emit(conn, make_event(event_type, tenant_id=tenant, subject=target, data=data))


def audit_view(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "actor_id": row["actor_id"],
        "actor_type": row["actor_type"],
        "action": row["action"],
        "target": row["target"],
        "ip": row["ip"],
        "details": json.loads(row["details"] or "{}"),
        "created_at": isoformat(to_datetime(row["created_at"])),
    }
