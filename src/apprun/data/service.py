"""The data service: reads and writes on collections, with rules, hooks and events.

Every request runs in one transaction (a read on SQLite takes a pooled
reader instead). On PostgreSQL that transaction first switches to the data
role and sets the tenant — ``set_config('role', …, true)`` and
``set_config('apprun.tenant_id', …, true)`` — so row-level security applies
and both settings end with the transaction, whatever happens: a pooled
connection never carries a tenant into the next request.

Writes emit ``apprun.record.created|updated|deleted`` through the events
outbox in the same transaction, one event per row, carrying the row as the
API returns it (``record``) and, for updates and deletes, the row before
(``old``). Rows a delete's ``on_delete: cascade`` / ``set_null`` removes or
changes are read before the delete and announced too (`apprun.data.cascades`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

from apprun.data.hooks import ListEvent, run_chain
from apprun.data.plans import hollow
from apprun.data.query_ast import FieldPath, Filter, ReadQuery
from apprun.data.rows import Count, ReadResult, WriteResult, _first_tenant, fetch_one, normalize_id
from apprun.data.sql_select import Access, CompiledRead
from apprun.data.writes import DataWrites
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.errors import NotFound

__all__ = ["DataService", "ReadResult", "WriteResult", "normalize_id"]


class DataService(DataWrites):
    """Reads and writes on collections (writes in `DataWrites`, shared plumbing in `RowsBase`)."""

    # --- reading ---------------------------------------------------------------
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
        tenant_header: str | None = None,
        ids: list[str] | None = None,
    ) -> ReadResult:
        """Rows of ``name`` as the JSON the database built.

        The compiled statement is cached by the query's shape (see plans.py):
        the next request of the same shape — other filter values, another
        page, another tenant — binds its own values to it.
        """
        collection = await self.catalog.require(name)
        shape = None
        if ids is None and not self.hooks.has("list", name):
            shape = hollow(query, offset)
        key = (self.catalog.version, name, shape.key, limit, count is not None, action) if shape else None
        names = self._plans.names(key)
        collections = await self.catalog.all()
        reader = self._reader(collections)
        if names is None:
            names = reader.collections_used(collection, query.select)
        access = await self._access_map(ctx, collection, names, action, tenant_header)
        tenant = access[collection.name].tenant_id or _first_tenant(access)
        async with self._scope(tenant, write=False) as conn:
            event = ListEvent(collection=collection, ctx=ctx, conn=conn, query=query)

            async def final(e: ListEvent) -> None:
                with_count = count is not None
                if key is not None and shape is not None and e.query is query:

                    def compile_hollow(slotted: dict[str, Access]) -> CompiledRead:
                        return reader.compile(
                            collection, shape.query, slotted, limit=limit, offset=shape.offset, with_count=with_count
                        )

                    compiled = self._plans.compiled(key, names, access, shape.values, compile_hollow)
                else:
                    compiled = reader.compile(
                        collection, e.query, access, limit=limit, offset=offset, with_count=with_count, ids=ids
                    )
                row = await fetch_one(conn, compiled.sql, compiled.params)
                e.body = str(row[0])
                e.rows = int(row[1])
                if compiled.count_sql is not None:
                    e.total = await self._count(conn, compiled.count_sql, compiled.count_params, count)

            await run_chain(event, self.hooks.handlers("list", name), final)
        if event.body is None:  # a hook skipped the read
            return ReadResult("[]", 0, 0 if count else None)
        return ReadResult(event.body, event.rows, event.total)

    async def _count(self, conn: Connection, sql: str, params: list[Any], how: Count | None) -> int:
        if self.dialect == "postgres" and how in ("planned", "estimated"):
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params)
            planned = int(json.loads(plan)[0]["Plan"]["Plan Rows"]) if plan else 0
            if how == "planned" or planned > self.settings.data_max_page_size:
                return planned
        return int(await conn.fetchval(sql, *params) or 0)

    async def get_one(
        self, ctx: RequestContext, name: str, record_id: str, query: ReadQuery, *, tenant_header: str | None = None
    ) -> str:
        """One row by id as a JSON object, or 404 (also when the caller may not see it).

        The id becomes an ``id=eq.<id>`` filter, so a view shares the cached
        plan of every other view of the same shape, and the object is cut out
        of the one-element array the database built (no JSON round trip).
        """
        by_id = Filter(FieldPath("id"), "eq", normalize_id(record_id))
        result = await self.read(
            ctx, name, replace(query, where=(by_id, *query.where)), action="view", tenant_header=tenant_header
        )
        if result.rows == 0:
            raise NotFound("data.record_not_found")
        return result.body.strip()[1:-1].strip()
