"""Plumbing the data service's reads and writes share: the request's transaction, rows as JSON, events."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from apprun.data.access import resolve_access
from apprun.data.catalog import Catalog
from apprun.data.hooks import DEFAULT, Hooks
from apprun.data.model import CollectionDef
from apprun.data.plans import Plans
from apprun.data.query_ast import ReadQuery, Star
from apprun.data.sql_select import Access, SelectCompiler
from apprun.data.sql_write import WriteCompiler
from apprun.data.validation import canonical_datetime
from apprun.events.envelope import make_event
from apprun.events.outbox import emit
from apprun.kernel.config import Settings
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection, Database, Row
from apprun.kernel.errors import ApiError, ForeignKeyViolation, InternalError, NotFound
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.rbac.service import Rbac

__all__ = ["ReadResult", "RowsBase", "WriteResult", "fetch_one", "normalize_id"]

Count = Literal["exact", "planned", "estimated"]
Resolution = Literal["merge-duplicates", "ignore-duplicates"]
#: Rows one POST may carry.
MAX_BULK_ROWS = 10_000


@dataclass(frozen=True)
class ReadResult:
    #: The JSON array, as the database built it.
    body: str
    #: Rows in ``body``.
    rows: int
    #: All rows matching, when a count was asked for.
    total: int | None = None


@dataclass(frozen=True)
class WriteResult:
    #: The written rows as a JSON array (when a representation was asked for).
    body: str | None
    rows: int
    ids: list[str]


class RowsBase:
    """The state and helpers of `DataService` (see service.py for the lifecycle)."""

    def __init__(
        self, settings: Settings, db: Database, catalog: Catalog, rbac: Rbac, hooks: Hooks | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.dialect = db.dialect
        self.catalog = catalog
        self.rbac = rbac
        self.hooks = DEFAULT.merged(hooks)
        self._plans = Plans()

    # --- plumbing -------------------------------------------------------------
    def _reader(self, collections: dict[str, CollectionDef]) -> SelectCompiler:
        return SelectCompiler(
            self.dialect,
            collections,
            tenant_predicate=self.settings.data_tenant_predicate,
            max_rows=self.settings.data_max_page_size,
        )

    @asynccontextmanager
    async def _scope(self, tenant_id: str | None, *, write: bool) -> AsyncIterator[Connection]:
        """The request's transaction, as the data role with the tenant set (PostgreSQL)."""
        if self.dialect == "postgres":
            async with self.db.transaction() as conn:
                await conn.execute(
                    "SELECT set_config('role', $1, true), set_config('apprun.tenant_id', $2, true)",
                    self.settings.db_data_role,
                    tenant_id or "",
                )
                yield conn
        elif write:
            async with self.db.transaction() as conn:
                yield conn
        else:
            async with self.db.read() as conn:
                yield conn

    async def _access_map(
        self, ctx: RequestContext, collection: CollectionDef, names: set[str], action: str, tenant_header: str | None
    ) -> dict[str, Access]:
        """Access for ``collection`` under ``action`` and for every embedded collection under ``list``."""
        collections = self.catalog.current()
        out = {collection.name: await resolve_access(self.rbac, ctx, collection, action, tenant_header=tenant_header)}
        for name in names - {collection.name}:
            out[name] = await resolve_access(self.rbac, ctx, collections[name], "list", tenant_header=tenant_header)
        return out

    # --- writing: helpers ------------------------------------------------------------
    async def _records(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, ids: list[str]
    ) -> list[dict[str, Any]]:
        """The rows ``ids`` as the API returns them with ``select=*`` (for events and hooks)."""
        if not ids:
            return []
        reader = self._reader({collection.name: collection})
        reader.max_rows = len(ids)
        compiled = reader.compile(
            collection, ReadQuery(), {collection.name: Access(tenant_id=tenant)}, limit=None, offset=None,
            with_count=False, ids=ids,
        )  # fmt: skip
        row = await fetch_one(conn, compiled.sql, compiled.params)
        parsed: list[dict[str, Any]] = json.loads(row[0])
        if len(parsed) > 1:  # in the order asked for (the order of the body, or of the targets)
            position = {record_id: i for i, record_id in enumerate(ids)}
            parsed.sort(key=lambda r: position.get(r["id"], 0))
        return parsed

    async def _representation_access(
        self, ctx: RequestContext, collection: CollectionDef, query: ReadQuery | None, tenant_header: str | None
    ) -> dict[str, Access] | None:
        """What a write's representation may show (``view`` on the collection, ``list`` on embeds).

        Asked before the write's transaction: RBAC may read the policies on
        a connection of its own, and a transaction must not wait for a
        second connection while it holds one.
        """
        if query is None:
            return None
        names = self._reader(self.catalog.current()).collections_used(collection, query.select)
        return await self._access_map(ctx, collection, names, "view", tenant_header)

    async def _representation(
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
        reader = self._reader(self.catalog.current())
        reader.max_rows = max(len(ids), 1)
        select_only = ReadQuery(select=query.select, embedded=query.embedded)
        compiled = reader.compile(collection, select_only, access, limit=None, offset=None, with_count=False, ids=ids)
        row = await fetch_one(conn, compiled.sql, compiled.params)
        return str(row[0])

    def _now(self) -> Any:
        now = utcnow()
        return now if self.dialect == "postgres" else canonical_datetime(now)

    async def _check_references(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, rows: list[dict[str, Any]]
    ) -> None:
        """Relations must point at rows of the writer's own tenant (the foreign key alone checks existence)."""
        collections = self.catalog.current()
        writer = WriteCompiler(self.dialect, self._reader(collections))
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

    async def _emit(
        self, conn: Connection, collection: CollectionDef, tenant: str | None, kind: str, *,
        record: dict[str, Any] | None, old: dict[str, Any] | None,
    ) -> None:  # fmt: skip
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

    def _system_values(
        self, ctx: RequestContext, collection: CollectionDef, tenant: str | None, record_id: str | None = None
    ) -> dict[str, Any]:
        now = self._now()
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


async def fetch_one(conn: Connection, sql: str, params: list[Any]) -> Row:
    """The one row of a query that always has one (an aggregate)."""
    row = await conn.fetchrow(sql, *params)
    if row is None:  # pragma: no cover - an aggregate without GROUP BY always returns a row
        raise InternalError()
    return row


def normalize_id(value: str) -> str:
    """A record id from a URL, lower-cased; 404 when it cannot be one."""
    lowered = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", lowered):
        raise NotFound("data.record_not_found")
    return lowered


def _check_single(expected: bool, rows: int) -> None:
    """``Accept: application/vnd.pgrst.object+json`` on a write: anything but one row rolls it back."""
    if expected and rows != 1:
        raise ApiError("data.not_single", status=406, params={"rows": rows}, details={"rows": rows})


def _first_tenant(access: dict[str, Access]) -> str | None:
    return next((a.tenant_id for a in access.values() if a.tenant_id is not None), None)
