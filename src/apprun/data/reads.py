"""Reads on collections: a list through the ``list`` hooks, one record by id, counts.

The compiled statement is cached by the query's shape (`apprun.data.sql.plan_cache`):
the next request of the same shape — other filter values, another page,
another tenant — binds its own values to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from apprun.data.access import Access, first_tenant
from apprun.data.hooks import Hooks, ListEvent, run_chain
from apprun.data.query.ast import FieldPath, Filter, ReadQuery
from apprun.data.rows import RowStore, fetch_one, normalize_id, sole_element
from apprun.data.sql.plan_cache import Plans, hollow
from apprun.data.sql.select import CompiledRead
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.errors import NotFound

__all__ = ["Count", "DataReads", "ReadResult"]

Count = Literal["exact", "planned", "estimated"]


@dataclass(frozen=True)
class ReadResult:
    #: The JSON array, as the database built it.
    body: str
    #: Rows in ``body``.
    rows: int
    #: All rows matching, when a count was asked for.
    total: int | None = None


class DataReads:
    """Lists and single records, with the ``list``/``view`` rules and the ``list`` hooks."""

    def __init__(self, rows: RowStore, hooks: Hooks) -> None:
        self.rows = rows
        self.hooks = hooks
        self.plans = Plans()

    async def read(
        self,
        ctx: RequestContext,
        name: str,
        query: ReadQuery,
        *,
        limit: int | None = None,
        offset: int | None = None,
        count: Count | None = None,
        action: Literal["list", "view"] = "list",
        ids: list[str] | None = None,
    ) -> ReadResult:
        """Rows of ``name`` as the JSON the database built."""
        catalog = self.rows.catalog
        collection = await catalog.require(name)
        shape = None
        handlers = self.hooks.handlers("list", name)
        if ids is None and not handlers:
            shape = hollow(query, offset)
        key = (catalog.version, name, shape.key, limit, count is not None, action) if shape else None
        names = self.plans.names(key)
        reader = self.rows.reader(await catalog.all())
        if names is None:
            names = reader.collections_used(collection, query.select)
        access = await self.rows.access_map(ctx, collection, names, action)
        tenant = access[collection.name].tenant_id or first_tenant(access)
        async with self.rows.scope(tenant, write=False) as conn:
            event = ListEvent(collection=collection, ctx=ctx, conn=conn, query=query)

            async def final(e: ListEvent) -> None:
                with_count = count is not None
                if key is not None and shape is not None and e.query is query:

                    def compile_hollow(slotted: dict[str, Access]) -> CompiledRead:
                        return reader.compile(
                            collection, shape.query, slotted, limit=limit, offset=shape.offset, with_count=with_count
                        )

                    compiled = self.plans.compiled(key, names, access, shape.values, compile_hollow)
                else:
                    compiled = reader.compile(
                        collection, e.query, access, limit=limit, offset=offset, with_count=with_count, ids=ids
                    )
                row = await fetch_one(conn, compiled.sql, compiled.params)
                e.body = str(row[0])
                e.rows = int(row[1])
                if compiled.count_sql is not None:
                    e.total = await self._count(conn, compiled.count_sql, compiled.count_params, count)

            if handlers:
                await run_chain(event, handlers, final)
            else:  # no hooks: no chain to build
                await final(event)
        if event.body is None:  # a hook skipped the read
            return ReadResult("[]", 0, 0 if count else None)
        return ReadResult(event.body, event.rows, event.total)

    async def _count(self, conn: Connection, sql: str, params: list[Any], how: Count | None) -> int:
        if self.rows.dialect == "postgres" and how in ("planned", "estimated"):
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params)
            planned = int(json.loads(plan)[0]["Plan"]["Plan Rows"]) if plan else 0
            if how == "planned" or planned > self.rows.settings.data_max_page_size:
                return planned
        return int(await conn.fetchval(sql, *params) or 0)

    async def get_one(self, ctx: RequestContext, name: str, record_id: str, query: ReadQuery) -> str:
        """One row by id as a JSON object, or 404 (also when the caller may not see it).

        The id becomes an ``id=eq.<id>`` filter, so a view shares the cached
        plan of every other view of the same shape, and the object is cut out
        of the one-element array the database built.
        """
        by_id = Filter(FieldPath("id"), "eq", normalize_id(record_id))
        result = await self.read(ctx, name, query.with_conditions((by_id, *query.where), query.embedded), action="view")
        if result.rows == 0:
            raise NotFound("data.record_not_found")
        return sole_element(result.body)
