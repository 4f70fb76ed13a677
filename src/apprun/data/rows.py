"""The database side the data service's reads and writes share: the request's transaction, rows as JSON, events.

`RowStore` is one object that `DataReads` and `DataWrites` both hold (see
service.py): it opens the request's transaction, builds the compilers,
resolves the access rules of every collection a query touches, reads rows
back as the API returns them and writes their events. The functions below
it are the small rules of the reply both sides (and the HTTP layer) apply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from apprun.data.access import Access, resolve_access
from apprun.data.query.ast import ReadQuery, Star
from apprun.data.schema.catalog import Catalog
from apprun.data.schema.model import CollectionDef
from apprun.data.schema.validation import canonical_datetime
from apprun.data.settings import DataSettings
from apprun.data.sql.expressions import quote
from apprun.data.sql.select import SelectCompiler
from apprun.data.sql.write import WriteCompiler
from apprun.events.envelope import make_event
from apprun.events.outbox import emit
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database, Row
from apprun.kernel.errors import ApiError, ForeignKeyViolation, InternalError, NotFound
from apprun.kernel.ids import canonical_uuid, new_id
from apprun.kernel.times import utcnow
from apprun.rbac.service import Rbac

__all__ = ["RowStore", "check_single", "fetch_one", "normalize_id", "sole_element"]

#: Stand-ins for the ids and the tenant while a read-back statement is compiled (never a real id or tenant).
_IDS_MARK = "\x00apprun-ids"
_TENANT_MARK = "\x00apprun-tenant"


@dataclass(frozen=True, slots=True)
class _ReadBack:
    """The compiled read-back of a collection's rows by id, and where its ids and tenant go."""

    collection: CollectionDef
    sql: str
    params: list[Any]
    ids_at: int
    tenant_at: int | None


class RowStore:
    """Transactions, compilers, access and rows as JSON, for the reads and the writes of one service."""

    def __init__(self, settings: DataSettings, db: Database, catalog: Catalog, rbac: Rbac) -> None:
        self.settings = settings
        self.db = db
        self.dialect = db.dialect
        self.catalog = catalog
        self.rbac = rbac
        #: Read-backs by (collection, with a tenant): every write reads its rows back, the same statement.
        self._read_backs: dict[tuple[str, bool], _ReadBack] = {}
        #: What an INSERT returns, by collection: the row object of the read-back (see `inserted`).
        self._returning: dict[str, tuple[CollectionDef, str]] = {}

    # --- compilers and the transaction ------------------------------------------------
    def reader(self, collections: dict[str, CollectionDef]) -> SelectCompiler:
        return SelectCompiler(
            self.dialect,
            collections,
            tenant_predicate=self.settings.data_tenant_predicate,
            max_rows=self.settings.data_max_page_size,
        )

    def writer(self) -> WriteCompiler:
        """The write compiler over the catalog as the request found it (see `Catalog.current`)."""
        return WriteCompiler(self.dialect, self.reader(self.catalog.current()))

    @asynccontextmanager
    async def scope(self, tenant_id: str | None, *, write: bool) -> AsyncIterator[Connection]:
        """The request's transaction, as the data role with the tenant set (PostgreSQL)."""
        if self.dialect == "postgres":
            local = {"role": self.settings.db_data_role, "apprun.tenant_id": tenant_id or ""}
            async with self.db.transaction(local) as conn:
                yield conn
        elif write:
            async with self.db.transaction() as conn:
                yield conn
        else:
            async with self.db.read() as conn:
                yield conn

    # --- access -----------------------------------------------------------------------
    async def access_map(
        self, ctx: RequestContext, collection: CollectionDef, names: set[str], action: str
    ) -> dict[str, Access]:
        """Access for ``collection`` under ``action`` and for every embedded collection under ``list``."""
        collections = self.catalog.current()
        out = {collection.name: await resolve_access(self.rbac, ctx, collection, action)}
        for name in names - {collection.name}:
            out[name] = await resolve_access(self.rbac, ctx, collections[name], "list")
        return out

    async def representation_access(
        self, ctx: RequestContext, collection: CollectionDef, query: ReadQuery | None
    ) -> dict[str, Access] | None:
        """What a write's representation may show (``view`` on the collection, ``list`` on embeds).

        Asked before the write's transaction: RBAC may read the policies on
        a connection of its own, and a transaction must not wait for a
        second connection while it holds one.
        """
        if query is None:
            return None
        names = self.reader(self.catalog.current()).collections_used(collection, query.select)
        return await self.access_map(ctx, collection, names, "view")

    # --- rows as the API returns them ---------------------------------------------------
    async def records(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, ids: list[str]
    ) -> list[dict[str, Any]]:
        """The rows ``ids`` as the API returns them with ``select=*`` (for events and hooks)."""
        if not ids:
            return []
        plan = self._read_back(collection, tenant is not None)
        params = list(plan.params)
        params[plan.ids_at] = list(ids) if self.dialect == "postgres" else json.dumps(list(ids))
        if plan.tenant_at is not None:
            params[plan.tenant_at] = tenant
        row = await fetch_one(conn, plan.sql, params)
        return _in_order(json.loads(row[0]), ids)

    async def inserted(
        self, conn: Connection, writer: WriteCompiler, collection: CollectionDef, tenant: str | None,
        rows: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Insert ``rows``; they come back as `records` would read them, from the INSERT itself.

        Its ``RETURNING`` is the row object of the read-back, so the rows
        need no statement of their own (a round trip on PostgreSQL). It
        sees each row as inserted, defaults included; the read-back's tenant
        predicate has nothing to take away (every row has the writer's
        tenant, and row-level security checked it on the way in).
        """
        returning = self.returning(collection)
        ids = [r["id"] for r in rows]
        parsed: list[dict[str, Any]] = []
        for stmt in writer.insert(collection, rows, returning=returning):
            if returning is None:
                await conn.execute(stmt.sql, *stmt.params)
            else:
                parsed += [json.loads(r[0]) for r in await conn.fetch(stmt.sql, *stmt.params)]
        if returning is None:
            return await self.records(conn, collection, tenant, ids)
        return _in_order(parsed, ids)

    def returning(self, collection: CollectionDef) -> str | None:
        """What an INSERT into ``collection`` returns for `inserted`: a row as ``select=*`` shows it.

        None on SQLite, where the rows are read back: there ``IS NULL`` in a
        ``RETURNING`` clause is wrong (false for a NULL, in 3.40.1), and the
        row object tests for NULL (booleans, numbers). In process, the read-back
        costs a statement, not a round trip.
        """
        if self.dialect == "sqlite":
            return None
        found = self._returning.get(collection.name)
        if found is not None and found[0] is collection:
            return found[1]
        expr = self.reader({collection.name: collection}).record_object(collection, quote(collection.name))
        self._returning[collection.name] = (collection, expr)
        return expr

    def _read_back(self, collection: CollectionDef, with_tenant: bool) -> _ReadBack:
        """The read-back statement of ``collection``, compiled once per definition of it.

        It is compiled with stand-ins for the ids and the tenant, whose
        parameters are then found and replaced per write; the definition is
        compared by identity, so a changed collection compiles anew.
        """
        key = (collection.name, with_tenant)
        found = self._read_backs.get(key)
        if found is not None and found.collection is collection:
            return found
        reader = self.reader({collection.name: collection})
        reader.max_rows = None  # the ids bound the rows
        access = {collection.name: Access(tenant_id=_TENANT_MARK if with_tenant else None)}
        compiled = reader.compile(
            collection, ReadQuery(), access, limit=None, offset=None, with_count=False, ids=[_IDS_MARK]
        )
        ids_value: Any = [_IDS_MARK] if self.dialect == "postgres" else json.dumps([_IDS_MARK])
        ids_at = [i for i, p in enumerate(compiled.params) if p == ids_value]
        tenant_at = [i for i, p in enumerate(compiled.params) if p == _TENANT_MARK]
        # The tenant is a parameter when the compiled predicate is on (DATA_TENANT_PREDICATE; RLS fences it anyway).
        expected_tenant = int(with_tenant and reader.tenant_predicate)
        if len(ids_at) != 1 or len(tenant_at) != expected_tenant:  # pragma: no cover - the compiler changed
            raise InternalError()
        plan = _ReadBack(collection, compiled.sql, compiled.params, ids_at[0], tenant_at[0] if tenant_at else None)
        self._read_backs[key] = plan
        return plan

    async def representation(
        self, conn: Connection, collection: CollectionDef, query: ReadQuery | None,
        access: dict[str, Access] | None, *, records: list[dict[str, Any]],
    ) -> str | None:  # fmt: skip
        """The body a write returns (``Prefer: return=representation``): its rows, through ``select``."""
        if query is None or access is None:
            return None
        ids = [r["id"] for r in records]
        plain = query.select == (Star(),) and not query.embedded
        if plain and access[collection.name].owner_column is None:
            return json.dumps(records, separators=(",", ":"), ensure_ascii=False)
        if not ids:
            return "[]"
        reader = self.reader(self.catalog.current())
        reader.max_rows = max(len(ids), 1)
        select_only = ReadQuery(select=query.select, embedded=query.embedded)
        compiled = reader.compile(collection, select_only, access, limit=None, offset=None, with_count=False, ids=ids)
        row = await fetch_one(conn, compiled.sql, compiled.params)
        return str(row[0])

    # --- what a write adds ------------------------------------------------------------------
    def now(self) -> Any:
        now = utcnow()
        return now if self.dialect == "postgres" else canonical_datetime(now)

    def system_values(
        self, ctx: RequestContext, collection: CollectionDef, tenant: str | None, record_id: str | None = None
    ) -> dict[str, Any]:
        now = self.now()
        values: dict[str, Any] = {
            "id": record_id or new_id(),
            "tenant_id": tenant,
            "created_at": now,
            "updated_at": now,
            "created_by": ctx.user_id,
        }
        if collection.owner_field is not None:
            values[collection.owner_field] = ctx.user_id
        return values

    async def check_references(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, rows: list[dict[str, Any]]
    ) -> None:
        """Relations must point at rows of the writer's own tenant (the foreign key alone checks existence)."""
        collections = self.catalog.current()
        writer = self.writer()
        for f in collection.column_fields:
            if f.type != "relation":
                continue
            wanted = sorted({r[f.name] for r in rows if r.get(f.name) is not None})
            target = collections.get(f.collection or "")
            if not wanted or target is None:
                continue
            stmt = writer.existing_references(target, tenant, wanted)
            found = int(await conn.fetchval(stmt.sql, *stmt.params) or 0)
            if found != len(wanted):
                raise ForeignKeyViolation("data.invalid_reference", params={"field": f.name, "collection": target.name})

    async def emit(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, kind: str, *,
        record: dict[str, Any] | None, old: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        """``apprun.record.<kind>`` into the outbox, in the write's transaction."""
        row_id = (record or old or {}).get("id")
        await emit(
            conn,
            make_event(
                f"apprun.record.{kind}",
                tenant_id=tenant,
                subject=f"{collection.name}/{row_id}",
                data={"collection": collection.name, "record": record, "old": old},
            ),
        )


async def fetch_one(conn: Connection, sql: str, params: list[Any]) -> Row:
    """The one row of a query that always has one (an aggregate)."""
    row = await conn.fetchrow(sql, *params)
    if row is None:  # pragma: no cover - an aggregate without GROUP BY always returns a row
        raise InternalError()
    return row


def _in_order(records: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """``records`` in the order of ``ids`` (the order of the body, or of the targets)."""
    if len(records) > 1:
        position = {record_id: i for i, record_id in enumerate(ids)}
        records.sort(key=lambda r: position.get(r["id"], 0))
    return records


def normalize_id(value: str) -> str:
    """A record id from a URL, lower-cased; 404 when it cannot be one."""
    record_id = canonical_uuid(value.strip())
    if record_id is None:
        raise NotFound("data.record_not_found")
    return record_id


def check_single(rows: int) -> None:
    """``Accept: application/vnd.pgrst.object+json``: anything but one row is a 406 (a write is rolled back)."""
    if rows != 1:
        raise ApiError("data.not_single", status=406, params={"rows": rows}, details={"rows": rows})


def sole_element(body: str) -> str:
    """The element of a one-element JSON array, cut out of the text the database built (no JSON round trip)."""
    return body.strip()[1:-1].strip()
