"""Compiled reads, cached by the query's *shape* so a repeated request skips the compiler.

A read's SQL depends on the collection's definition (the catalog version),
the query's structure and on *which* access predicates apply — not on the
filter values, the page's offset, or whose tenant and user it is. So a
query is first hollowed: each filter value that only becomes a parameter
(``eq``, ``gt``, ``like``, ``match``, ``fts``, every element of ``in`` …) is
replaced by a `Hole`, the offset too, and the tenant and user become
placeholders. The hollow query is the cache key; its compiled statement keeps
`Deferred` parameters that convert this request's values (type checks
included) when it is bound. ``title=eq.a`` and ``title=eq.b`` share one plan;
``title=eq.a`` and ``title=like.a*`` do not, nor do ``in`` lists of different
lengths or ``is.null`` and ``is.true`` (their SQL differs).

One cached plan serves every tenant and user, and a tenant's id can never be
baked into a statement another tenant runs. Entries are evicted least
recently used first; a catalog change makes old keys unreachable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from apprun.data.access import Access, first_tenant
from apprun.data.query.ast import BoolExpr, Condition, EmbedOptions, ReadQuery
from apprun.data.sql.expressions import Deferred, Hole
from apprun.data.sql.select import CompiledRead

__all__ = ["Hollow", "Plans", "hollow"]

#: Operators whose value is only ever a bound parameter (so it can be left out of the shape).
_BOUND_ONLY = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch", "isdistinct",
     "fts", "plfts", "phfts", "wfts", "in"}
)  # fmt: skip


class _Slot:
    """A placeholder for the tenant or the user, bound per request."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


TENANT: Final = _Slot("tenant")
OWNER: Final = _Slot("owner")


@dataclass(frozen=True)
class Hollow:
    """A query without its values: ``query`` to compile, ``key`` to cache by, ``values`` to bind."""

    query: ReadQuery
    key: Hashable
    values: tuple[str, ...]
    #: The offset, as the hole the compiler gets (None when there is none).
    offset: Deferred | None


def hollow(query: ReadQuery, offset: int | None) -> Hollow:
    """``query`` with its bound-only values (and ``offset``) replaced by holes."""
    values: list[str] = []

    def hole(value: str) -> Hole:
        values.append(value)
        return Hole(len(values) - 1)

    def condition(c: Condition) -> Condition:
        if isinstance(c, BoolExpr):
            return c.with_items(tuple(condition(i) for i in c.items))
        if c.op not in _BOUND_ONLY or c.modifier in ("any", "all"):
            return c
        if isinstance(c.value, tuple):
            return c.with_value(tuple(hole(v) for v in c.value))
        return c.with_value(hole(c.value))

    def options(o: EmbedOptions) -> EmbedOptions:
        return o.with_where(tuple(condition(c) for c in o.where))

    hollowed = query.with_conditions(
        tuple(condition(c) for c in query.where),
        {path: options(o) for path, o in query.embedded.items()} if query.embedded else {},
    )
    offset_slot = None
    if offset:
        values.append(str(offset))
        offset_slot = Deferred(len(values) - 1, int)
    key = (
        hollowed.select,
        hollowed.where,
        hollowed.order,
        tuple(sorted(hollowed.embedded.items())),
        offset_slot is not None,
    )
    return Hollow(hollowed, key, tuple(values), offset_slot)


def _shape(access: dict[str, Access]) -> tuple[tuple[str, bool, str | None], ...]:
    return tuple(sorted((name, a.tenant_id is not None, a.owner_column) for name, a in access.items()))


class Plans:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._names: OrderedDict[Hashable, set[str]] = OrderedDict()
        self._compiled: OrderedDict[Hashable, CompiledRead] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def names(self, key: Hashable | None) -> set[str] | None:
        """The collections a cached query touches (to check their rules before compiling anything)."""
        if key is None:
            return None
        found = self._names.get(key)
        if found is not None:
            self._names.move_to_end(key)
        return found

    def compiled(
        self,
        key: Hashable,
        names: set[str],
        access: dict[str, Access],
        values: Sequence[str],
        compile_with: Callable[[dict[str, Access]], CompiledRead],
    ) -> CompiledRead:
        """The statement for ``key`` under this access shape, bound to this request's values, tenant and user."""
        full = (key, _shape(access))
        plan = self._compiled.get(full)
        if plan is None:
            self.misses += 1
            slotted = {
                name: Access(
                    tenant_id=cast(Any, TENANT) if a.tenant_id is not None else None,
                    owner_column=a.owner_column,
                    owner_id=cast(Any, OWNER) if a.owner_column is not None else None,
                )
                for name, a in access.items()
            }
            plan = compile_with(slotted)
            self._remember(self._compiled, full, plan)
            self._remember(self._names, key, names)
        else:
            self.hits += 1
            self._compiled.move_to_end(full)
        tenant = first_tenant(access)
        owner = next((a.owner_id for a in access.values() if a.owner_column is not None), None)
        return CompiledRead(
            plan.sql,
            bind(plan.params, values, tenant, owner),
            plan.count_sql,
            bind(plan.count_params, values, tenant, owner),
        )

    def _remember(self, cache: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.size:
            cache.popitem(last=False)


def bind(params: list[Any], values: Sequence[str], tenant: str | None, owner: str | None) -> list[Any]:
    """A statement's parameters for one request (value conversions may raise their 400s here)."""
    out: list[Any] = []
    for p in params:
        if p is TENANT:
            out.append(tenant)
        elif p is OWNER:
            out.append(owner)
        elif isinstance(p, Deferred):
            out.append(p.bind(values))
        else:
            out.append(p)
    return out
