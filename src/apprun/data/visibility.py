"""May this caller see this row? The data API's ``view`` rule, decided in memory.

The data API compiles a collection's rule into SQL (`resolve_access` gives
the `Access`, `SelectCompiler.access_predicates` turns it into ``WHERE``
clauses). Code that already holds a row — an event about a record, a
realtime change — asks the same question without a query:
`may_view` takes the very same `Access` from `resolve_access` (tenant,
rule, roles through `Rbac.authorize`, the bypass of a service key or a
platform admin) and applies its predicates to the row dict with `row_in`,
the in-memory twin of the SQL predicates. tests/events/test_visibility.py
holds the two side by side for every rule and kind of caller.

`RecordVisibility` is the data module's side of the events module's
`EventVisibility` port: which ``apprun.record.*`` event a reader receives.

- ``created`` and ``updated``: the row after the change (``record``) decides;
  an update whose row before (``old``) the reader could not see arrives with
  ``old: null``.
- ``deleted``: the row before the delete (``old``) decides, as if it were
  still there.
- An event of a collection that no longer exists, or that does not look like
  a record event, reaches only the callers who bypass the rules (fail
  closed).

Record events never carry hidden fields: the data service writes each row
into its event as the API returns it (``select=*``), which leaves them out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from apprun.data.access import Access, bypasses_rules, resolve_access
from apprun.data.schema.catalog import Catalog
from apprun.data.schema.model import CollectionDef
from apprun.events.envelope import CloudEvent
from apprun.events.visibility import RECORD_EVENT_PREFIX
from apprun.kernel.context import RequestContext
from apprun.kernel.errors import ApiError
from apprun.rbac.service import Rbac

__all__ = ["RecordVisibility", "may_view", "row_in", "view_access"]


def row_in(access: Access, collection: CollectionDef, row: dict[str, Any]) -> bool:
    """Whether ``row`` passes the predicates ``access`` compiles to (`SelectCompiler.access_predicates`).

    The tenant is compared even where the SQL may leave it to row-level
    security (``DATA_TENANT_PREDICATE``): here nothing else would.
    """
    if collection.scope == "tenant" and (access.tenant_id is None or row.get("tenant_id") != access.tenant_id):
        return False
    if access.owner_column is not None:
        # An owner column missing from the row (a hidden owner field) proves nothing: refused.
        owner = row.get(access.owner_column)
        return access.owner_id is not None and owner is not None and str(owner) == access.owner_id
    return True


async def view_access(rbac: Rbac, ctx: RequestContext, collection: CollectionDef) -> Access | None:
    """What ``ctx`` may view of ``collection`` (as the data API decides it), or None for nothing."""
    try:
        return await resolve_access(rbac, ctx, collection, "view")
    except ApiError:  # 401/403/400: no row of this collection is visible to this caller
        return None


async def may_view(rbac: Rbac, ctx: RequestContext, collection: CollectionDef, row: dict[str, Any]) -> bool:
    """Whether ``GET /data/{collection}/{row id}`` would show ``row`` to ``ctx`` now, decided without a query.

    Asks `Rbac.authorize` for an ``rbac`` rule (cached per policy version);
    every other rule is decided from the collection, the context and the row.
    """
    access = await view_access(rbac, ctx, collection)
    return access is not None and row_in(access, collection, row)


class RecordVisibility:
    """Implements `apprun.events.visibility.EventVisibility` with the data API's ``view`` rules."""

    def __init__(self, catalog: Catalog, rbac: Rbac) -> None:
        self.catalog = catalog
        self.rbac = rbac

    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:
        """``event`` as ``ctx`` may receive it: unchanged, with ``old`` removed, or None."""
        if not event.type.startswith(RECORD_EVENT_PREFIX):
            return event
        data = event.data if isinstance(event.data, dict) else {}
        name = data.get("collection")
        collection = await self.catalog.get(name) if isinstance(name, str) else None
        if collection is None:
            return event if bypasses_rules(ctx) else None
        deleted = event.type == RECORD_EVENT_PREFIX + "deleted"
        deciding = data.get("old") if deleted else data.get("record")
        if not isinstance(deciding, dict):
            return event if bypasses_rules(ctx) else None
        access = await view_access(self.rbac, ctx, collection)
        if access is None or not row_in(access, collection, deciding):
            return None
        old = data.get("old")
        if not deleted and isinstance(old, dict) and not row_in(access, collection, old):
            # The row became visible to this reader: what it held before stays unseen.
            return msgspec.structs.replace(event, data={**data, "old": None})
        return event
