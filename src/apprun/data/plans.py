"""Compiled reads, kept per query so a repeated request skips the compiler.

A read's SQL depends on the collection's definition (the catalog version),
the query string, the paging and on *which* access predicates apply — not on
whose they are. The compiler is given placeholder objects for the tenant and
the user; the cached statement keeps them as parameters, and each request
binds its own values. So one cached plan serves every tenant and user, and a
tenant's id can never leak into another tenant's statement. Entries are
evicted least recently used first; a catalog change makes old keys unreachable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any, Final

from apprun.data.sql_select import Access, CompiledRead

__all__ = ["Plans"]


class _Slot:
    """A placeholder bound per request."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


TENANT: Final = _Slot("tenant")
OWNER: Final = _Slot("owner")


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
        compile_with: Callable[[dict[str, Access]], CompiledRead],
    ) -> CompiledRead:
        """The statement for ``key`` under this access shape, bound to this request's tenant and user."""
        full = (key, _shape(access))
        plan = self._compiled.get(full)
        if plan is None:
            self.misses += 1
            slotted = {
                name: Access(
                    tenant_id=TENANT if a.tenant_id is not None else None,  # type: ignore[arg-type]
                    owner_column=a.owner_column,
                    owner_id=OWNER if a.owner_column is not None else None,  # type: ignore[arg-type]
                )
                for name, a in access.items()
            }
            plan = compile_with(slotted)
            self._remember(self._compiled, full, plan)
            self._remember(self._names, key, names)
        else:
            self.hits += 1
            self._compiled.move_to_end(full)
        tenant = next((a.tenant_id for a in access.values() if a.tenant_id is not None), None)
        owner = next((a.owner_id for a in access.values() if a.owner_column is not None), None)
        return replace(
            plan, params=_bind(plan.params, tenant, owner), count_params=_bind(plan.count_params, tenant, owner)
        )

    def _remember(self, cache: OrderedDict[Hashable, Any], key: Hashable, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.size:
            cache.popitem(last=False)


def _bind(params: list[Any], tenant: str | None, owner: str | None) -> list[Any]:
    return [tenant if p is TENANT else owner if p is OWNER else p for p in params]
