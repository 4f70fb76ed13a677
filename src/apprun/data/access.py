"""Access rules: who may do what to a collection's rows, and which rows.

A collection names one rule per action (``list``, ``view``, ``create``,
``update``, ``delete``):

* ``public`` — anyone, signed in or not. For a tenant-scoped collection an
  anonymous caller names the tenant with the ``X-Tenant-Id`` header (read
  once, into `RequestContext.requested_tenant`, by the kernel middleware).
* ``authenticated`` — any signed-in user or API key of the tenant.
* ``owner`` — signed-in users, limited to rows whose owner field
  (``owner_field``, default ``created_by``) holds their id; a created row's
  owner is its creator.
* ``rbac`` — the tenant's policies decide: ``read`` (list, view),
  ``create``, ``update`` or ``delete`` on ``collection:<name>``.
* ``nobody`` — only the bypass callers below.

A tenant's service key and a platform admin bypass the rules (as Supabase's
service role does), but never the tenant: their rows are the active
tenant's too. A service key stands for one tenant, so it bypasses no rule
of a ``global`` collection, whose rows every tenant shares: there it is one
more signed-in caller of its tenant (``rbac`` asks that tenant's policies,
where a service key is allowed everything; ``owner`` and ``nobody`` refuse
it). The rule becomes an `Access`, compiled into the SQL ahead of the
client's filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from apprun.data.schema.model import CollectionDef
from apprun.kernel.context import RequestContext
from apprun.kernel.errors import BadRequest, Forbidden, Unauthorized
from apprun.rbac.service import PLATFORM_ADMIN, Rbac

__all__ = ["Access", "RuleAction", "bypasses_rules", "first_tenant", "resolve_access"]

RuleAction = str  # "list" | "view" | "create" | "update" | "delete"
_VERB = {"list": "read", "view": "read", "create": "create", "update": "update", "delete": "delete"}


@dataclass(frozen=True)
class Access:
    """What one collection's rows are limited to for this request (the rules' output, the compiler's input)."""

    tenant_id: str | None = None
    owner_column: str | None = None
    owner_id: str | None = None


def first_tenant(access: Mapping[str, Access]) -> str | None:
    """The tenant a request's accesses limit rows to (all that name one name the same: the caller's)."""
    return next((a.tenant_id for a in access.values() if a.tenant_id is not None), None)


def bypasses_rules(ctx: RequestContext) -> bool:
    return ctx.auth_method == "service" or bool(ctx.extra.get(PLATFORM_ADMIN))


def _bypasses(ctx: RequestContext, collection: CollectionDef) -> bool:
    """`bypasses_rules`, except a service key on a global collection: one tenant's key must not
    change (or read past the rules) what every tenant shares."""
    if ctx.auth_method == "service":
        return collection.scope == "tenant"
    return bypasses_rules(ctx)


def _signed_in(ctx: RequestContext) -> bool:
    return ctx.is_authenticated or ctx.auth_method in ("api_key", "service")


async def resolve_access(rbac: Rbac, ctx: RequestContext, collection: CollectionDef, action: RuleAction) -> Access:
    """The rows ``ctx`` may ``action`` in ``collection``; 401/403 when none at all."""
    rule = getattr(collection.rules, action)
    tenant = ctx.tenant_id
    if collection.scope == "tenant" and tenant is None and rule == "public" and ctx.requested_tenant is not None:
        if not ctx.requested_tenant:  # the header was there, but held no tenant id
            raise BadRequest("data.invalid_tenant_header")
        tenant = ctx.requested_tenant
    if collection.scope == "tenant" and tenant is None:
        if not _signed_in(ctx) and rule != "public":
            raise Unauthorized()
        raise BadRequest("data.tenant_required", params={"collection": collection.name})
    tenant_id = tenant if collection.scope == "tenant" else None
    if rule == "public" or _bypasses(ctx, collection):
        return Access(tenant_id=tenant_id)
    if not _signed_in(ctx):
        raise Unauthorized()
    if rule == "nobody":
        raise Forbidden("data.forbidden", params={"action": action, "collection": collection.name})
    if rule == "authenticated":
        return Access(tenant_id=tenant_id)
    if rule == "owner":
        if ctx.user_id is None:  # an API key is nobody's user
            raise Forbidden("data.forbidden", params={"action": action, "collection": collection.name})
        if action == "create":
            return Access(tenant_id=tenant_id)
        return Access(tenant_id=tenant_id, owner_column=collection.owner_column, owner_id=ctx.user_id)
    decision = await rbac.authorize(ctx, _VERB[action], f"collection:{collection.name}")
    if not decision.allowed:
        raise Forbidden("data.forbidden", params={"action": action, "collection": collection.name})
    return Access(tenant_id=tenant_id)
