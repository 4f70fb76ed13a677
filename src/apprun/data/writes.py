"""Writes on collections: create (bulk, upsert), update, delete, put — rules, hooks, one event per row."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from apprun.data.access import Access, resolve_access
from apprun.data.cascades import Effect, cascade_effects
from apprun.data.hooks import Hooks, WriteEvent, run_chain
from apprun.data.query.ast import FieldPath, Filter, ReadQuery
from apprun.data.rows import RowStore, check_single, normalize_id
from apprun.data.schema.model import CollectionDef
from apprun.data.schema.validation import NOW, validate_row
from apprun.data.sql.write import WriteCompiler
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.errors import BadRequest, InternalError, NotFound, UniqueViolation

__all__ = ["MAX_BULK_ROWS", "DataWrites", "Resolution", "WriteResult"]

Resolution = Literal["merge-duplicates", "ignore-duplicates"]
#: Rows one POST may carry.
MAX_BULK_ROWS = 10_000


@dataclass(frozen=True)
class WriteResult:
    #: The written rows as a JSON array (when a representation was asked for).
    body: str | None
    rows: int
    ids: list[str]


class DataWrites:
    """Create, update, delete and put: validated first, in one transaction, hooks per row, one event per row."""

    def __init__(self, rows: RowStore, hooks: Hooks) -> None:
        self.rows = rows
        self.hooks = hooks
        self.catalog = rows.catalog
        self.rbac = rows.rbac
        self.dialect = rows.dialect

    # --- create -------------------------------------------------------------------------
    async def create(
        self,
        ctx: RequestContext,
        name: str,
        body: Any,
        *,
        returning: ReadQuery | None = None,
        resolution: Resolution | None = None,
        on_conflict: tuple[str, ...] = (),
        expect_one: bool = False,
    ) -> WriteResult:
        """Insert one row (a JSON object) or many (an array), all or nothing; upsert with ``resolution``."""
        collection = await self.catalog.require(name)
        items = body if isinstance(body, list) else [body]
        if isinstance(body, list) and not body:
            raise BadRequest("data.empty_body")
        if len(items) > MAX_BULK_ROWS:
            raise BadRequest("data.too_many_rows", params={"max": MAX_BULK_ROWS})
        access = await resolve_access(self.rbac, ctx, collection, "create")
        update_access: Access | None = None
        conflict_columns: tuple[str, ...] = ()
        if resolution is not None:
            conflict_columns = self._conflict_target(collection, on_conflict)
            if resolution == "merge-duplicates":
                update_access = await resolve_access(self.rbac, ctx, collection, "update")
        tenant = access.tenant_id
        bulk = resolution is None and not self.hooks.has("create", name)
        # Validate everything before touching the database: one bad row, nothing written.
        rows = self._validated(ctx, collection, items, tenant) if bulk else []
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self.rows.representation_access(ctx, collection, returning)
        async with self.rows.scope(tenant, write=True) as conn:
            writer = self.rows.writer()
            if bulk:
                await self.rows.check_references(conn, collection, tenant, rows)
                records = await self.rows.inserted(conn, writer, collection, tenant, rows)
                for record in records:
                    await self.rows.emit(conn, collection, tenant, "created", record=record, old=None)
            else:
                records = []
                for item in items:
                    written = await self._create_one(
                        ctx,
                        conn,
                        collection,
                        writer,
                        tenant=tenant,
                        item=item,
                        update_access=update_access,
                        resolution=resolution,
                        conflict_columns=conflict_columns,
                    )
                    if written is not None:
                        records.append(written)
            if expect_one:
                check_single(len(records))
            body_out = await self.rows.representation(conn, collection, returning, view, records=records)
        return WriteResult(body_out, len(records), [r["id"] for r in records])

    def _validated(
        self, ctx: RequestContext, collection: CollectionDef, items: list[Any], tenant: str | None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        problems: dict[str, Any] = {}
        for index, item in enumerate(items):
            try:
                values = validate_row(collection, item, partial=False, dialect=self.dialect, locale=ctx.locale)
            except BadRequest as exc:
                if len(items) == 1:
                    raise
                problems[str(index)] = (exc.details or {}).get("fields", {})
                if len(problems) >= 20:
                    break
                continue
            rows.append({**self.rows.system_values(ctx, collection, tenant), **values})
        if problems:
            raise BadRequest("data.validation_failed", params={"count": len(problems)}, details={"rows": problems})
        return rows

    def _conflict_target(self, collection: CollectionDef, on_conflict: tuple[str, ...]) -> tuple[str, ...]:
        """``on_conflict`` must name the fields of one unique constraint (a unique field or unique index)."""
        if not on_conflict:
            raise BadRequest("data.on_conflict_required")
        wanted = set(on_conflict)
        uniques = [{f.name} for f in collection.column_fields if f.unique]
        uniques += [set(i.fields) for i in collection.indexes if i.unique]
        if wanted not in uniques:
            raise BadRequest("data.no_unique_constraint", params={"columns": ",".join(on_conflict)})
        return tuple(f.name for f in collection.column_fields if f.name in wanted) + tuple(
            c for c in on_conflict if collection.field(c) is None
        )

    async def _create_one(
        self,
        ctx: RequestContext,
        conn: Connection,
        collection: CollectionDef,
        writer: WriteCompiler,
        *,
        tenant: str | None,
        item: Any,
        update_access: Access | None,
        resolution: Resolution | None,
        conflict_columns: tuple[str, ...],
    ) -> dict[str, Any] | None:
        """One row through the create hooks (an upsert through update's when it hits an existing row)."""
        if not isinstance(item, dict):
            validate_row(collection, item, partial=False, dialect=self.dialect, locale=ctx.locale)  # raises
        if resolution is None:
            return await self._insert_one(ctx, conn, collection, writer, tenant=tenant, item=item)
        values = validate_row(collection, item, partial=False, dialect=self.dialect, locale=ctx.locale)
        row = {**self.rows.system_values(ctx, collection, tenant), **values}
        key: dict[str, Any] | None = _conflict_key(collection, conflict_columns, row)
        # Twice at most: an INSERT that loses a race has locked the row it lost to (merge-duplicates),
        # so the second lookup finds it.
        for _ in range(2):
            existing = None
            if key is not None:
                stmt = writer.find_conflict(collection, tenant, key)
                existing = await conn.fetchval(stmt.sql, *stmt.params)
            if existing is not None:
                if resolution == "ignore-duplicates":
                    return None
                if update_access is None:  # pragma: no cover - set whenever resolution is merge-duplicates
                    raise InternalError()
                return await self._merge(
                    ctx, conn, collection, writer, tenant=tenant, existing=existing, item=item, access=update_access
                )
            target = _conflict_sql_target(collection, conflict_columns)
            try:
                return await self._insert_one(
                    ctx, conn, collection, writer, tenant=tenant, item=item, upsert=(target, resolution)
                )
            except _LostRace as lost:
                if resolution == "ignore-duplicates":
                    return None
                key = _conflict_key(collection, conflict_columns, lost.row)
        raise UniqueViolation(code="data.unique_violation", params={"columns": ",".join(conflict_columns)})

    async def _merge(
        self, ctx: RequestContext, conn: Connection, collection: CollectionDef, writer: WriteCompiler, *,
        tenant: str | None, existing: str, item: dict[str, Any], access: Access,
    ) -> dict[str, Any] | None:  # fmt: skip
        """An upsert's row that exists: updated through the update rule and hooks, or a 409 if not allowed."""
        stmt = writer.target_ids(collection, access, (Filter(FieldPath("id"), "eq", existing),))
        if not await conn.fetchval(stmt.sql, *stmt.params):
            # Not the caller's to update: the same answer as an insert of a duplicate.
            raise UniqueViolation(code="data.unique_violation")
        updated = await self._update_rows(
            ctx, conn, collection, writer, tenant=tenant, targets=[existing], body=dict(item)
        )
        return updated[0] if updated else None

    async def _insert_one(
        self, ctx: RequestContext, conn: Connection, collection: CollectionDef, writer: WriteCompiler, *,
        tenant: str | None, item: dict[str, Any], upsert: tuple[tuple[str, ...], Resolution] | None = None,
    ) -> dict[str, Any] | None:  # fmt: skip
        """One row through the create hooks; for an upsert, `_LostRace` if its key turned out to be taken.

        A row with the upsert's key may be committed by another transaction
        between the lookup and this INSERT (PostgreSQL runs them side by side;
        SQLite's writers take turns, so never there). The INSERT then writes
        nothing and the row goes the update's way instead. What the create
        hooks wrote in the meantime is rolled back to a savepoint, so they
        leave no trace of a create that did not happen; their ``next()``
        raises `_LostRace`.
        """
        event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="create", data=dict(item))
        lost: list[dict[str, Any]] = []

        async def final(e: WriteEvent) -> None:
            values = validate_row(collection, e.data, partial=False, dialect=self.dialect, locale=ctx.locale)
            row = {**self.rows.system_values(ctx, collection, tenant), **values}
            await self.rows.check_references(conn, collection, tenant, [row])
            if upsert is None:
                e.record = (await self.rows.inserted(conn, writer, collection, tenant, [row]))[0]
            else:
                target, resolution = upsert
                returning = self.rows.returning(collection)
                stmt = writer.insert_unless_conflict(
                    collection, row, target, lock=resolution == "merge-duplicates", returning=returning or "id"
                )
                written = await conn.fetchval(stmt.sql, *stmt.params)
                if written is None:
                    lost.append(row)
                    raise _LostRace(row)
                if returning is None:
                    e.record = (await self.rows.records(conn, collection, tenant, [row["id"]]))[0]
                else:
                    e.record = json.loads(written)
            await self.rows.emit(conn, collection, tenant, "created", record=e.record, old=None)

        # The savepoint puts back what the hooks wrote and what they queued for the commit (events).
        savepoint = upsert is not None and self.hooks.has("create", collection.name)
        async with conn.savepoint() if savepoint else contextlib.nullcontext():
            with contextlib.suppress(_LostRace):  # told by ``lost``, also when a hook swallowed it
                await run_chain(event, self.hooks.handlers("create", collection.name), final)
            if lost:
                raise _LostRace(lost[0])
        return event.record

    # --- update ---------------------------------------------------------------------------
    async def update(
        self,
        ctx: RequestContext,
        name: str,
        query: ReadQuery,
        body: Any,
        *,
        returning: ReadQuery | None = None,
        ids: list[str] | None = None,
        expect_one: bool = False,
    ) -> WriteResult:
        """Change the rows ``query`` (or ``ids``) selects; refuses an unfiltered update unless allowed."""
        collection = await self.catalog.require(name)
        self._refuse_unfiltered(query, ids)
        if isinstance(body, dict) and not body:
            raise BadRequest("data.empty_update")
        # Validate first: a bad body (or not an object) is a 400 even when no row matches.
        validate_row(collection, body, partial=True, dialect=self.dialect, locale=ctx.locale)
        access = await resolve_access(self.rbac, ctx, collection, "update")
        tenant = access.tenant_id
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self.rows.representation_access(ctx, collection, returning)
        async with self.rows.scope(tenant, write=True) as conn:
            writer = self.rows.writer()
            targets = await self._targets(conn, writer, collection, access, query=query, ids=ids)
            records = await self._update_rows(ctx, conn, collection, writer, tenant=tenant, targets=targets, body=body)
            if expect_one:
                check_single(len(records))
            body_out = await self.rows.representation(conn, collection, returning, view, records=records)
        return WriteResult(body_out, len(records), [r["id"] for r in records])

    def _refuse_unfiltered(self, query: ReadQuery, ids: list[str] | None) -> None:
        if ids is None and not query.where and not self.rows.settings.data_allow_unfiltered_writes:
            raise BadRequest("data.unfiltered_write", hint="data.unfiltered_write_hint")

    async def _targets(
        self, conn: Connection, writer: WriteCompiler, collection: CollectionDef, access: Access, *,
        query: ReadQuery, ids: list[str] | None,
    ) -> list[str]:  # fmt: skip
        where = query.where
        if ids is not None:
            where = (*where, Filter(FieldPath("id"), "in", tuple(ids)))
        stmt = writer.target_ids(collection, access, where, order=query.order, limit=query.limit, offset=query.offset)
        return [r[0] for r in await conn.fetch(stmt.sql, *stmt.params)]

    async def _update_rows(
        self, ctx: RequestContext, conn: Connection, collection: CollectionDef, writer: WriteCompiler, *,
        tenant: str | None, targets: list[str], body: dict[str, Any],
    ) -> list[dict[str, Any]]:  # fmt: skip
        if not targets:
            return []
        olds = await self.rows.records(conn, collection, tenant, targets)
        if not self.hooks.has("update", collection.name):
            values = validate_row(collection, body, partial=True, dialect=self.dialect, locale=ctx.locale)
            await self.rows.check_references(conn, collection, tenant, [values])
            stmt = writer.update(collection, {**values, "updated_at": self.rows.now()}, targets)
            await conn.execute(stmt.sql, *stmt.params)
            news = await self.rows.records(conn, collection, tenant, targets)
            for old, new in zip(olds, news, strict=True):
                await self.rows.emit(conn, collection, tenant, "updated", record=new, old=old)
            return news
        out: list[dict[str, Any]] = []
        for old in olds:
            event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="update", data=dict(body), old=old)

            async def final(e: WriteEvent, before: dict[str, Any] = old) -> None:
                values = validate_row(collection, e.data, partial=True, dialect=self.dialect, locale=ctx.locale)
                await self.rows.check_references(conn, collection, tenant, [values])
                stmt = writer.update(collection, {**values, "updated_at": self.rows.now()}, [before["id"]])
                await conn.execute(stmt.sql, *stmt.params)
                e.record = (await self.rows.records(conn, collection, tenant, [before["id"]]))[0]
                await self.rows.emit(conn, collection, tenant, "updated", record=e.record, old=before)

            await run_chain(event, self.hooks.handlers("update", collection.name), final)
            if event.record is not None:
                out.append(event.record)
        return out

    # --- delete -----------------------------------------------------------------------------
    async def delete(
        self,
        ctx: RequestContext,
        name: str,
        query: ReadQuery,
        *,
        returning: ReadQuery | None = None,
        ids: list[str] | None = None,
        expect_one: bool = False,
    ) -> WriteResult:
        collection = await self.catalog.require(name)
        self._refuse_unfiltered(query, ids)
        access = await resolve_access(self.rbac, ctx, collection, "delete")
        tenant = access.tenant_id
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self.rows.representation_access(ctx, collection, returning)
        async with self.rows.scope(tenant, write=True) as conn:
            writer = self.rows.writer()
            targets = await self._targets(conn, writer, collection, access, query=query, ids=ids)
            olds = await self.rows.records(conn, collection, tenant, targets)
            if expect_one:
                check_single(len(olds))
            # The representation is read before the rows go (embeds included).
            body_out = await self.rows.representation(conn, collection, returning, view, records=olds)
            deleted = await self._delete_rows(ctx, conn, collection, writer, tenant=tenant, targets=targets, olds=olds)
        if returning is not None and len(deleted) != len(olds):  # a hook kept some rows: they are not in the body
            kept = {r["id"] for r in deleted}
            body_out = json.dumps([r for r in json.loads(body_out or "[]") if r.get("id") in kept])
        return WriteResult(body_out, len(deleted), [r["id"] for r in deleted])

    async def _delete_rows(
        self, ctx: RequestContext, conn: Connection, collection: CollectionDef, writer: WriteCompiler, *,
        tenant: str | None, targets: list[str], olds: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Delete ``targets`` (``olds``: their rows) with their cascades, announced; the rows that went."""
        if not self.hooks.has("delete", collection.name):
            effects = await self._cascades(conn, writer, collection, tenant, targets)
            if targets:
                stmt = writer.delete(collection, targets)
                await conn.execute(stmt.sql, *stmt.params)
            for old in olds:
                await self.rows.emit(conn, collection, tenant, "deleted", record=None, old=old)
            await self._announce(conn, tenant, effects)
            return olds
        deleted: list[dict[str, Any]] = []
        for old in olds:
            event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="delete", old=old)

            async def final(_e: WriteEvent, before: dict[str, Any] = old) -> None:
                effects = await self._cascades(conn, writer, collection, tenant, [before["id"]])
                stmt = writer.delete(collection, [before["id"]])
                await conn.execute(stmt.sql, *stmt.params)
                await self.rows.emit(conn, collection, tenant, "deleted", record=None, old=before)
                await self._announce(conn, tenant, effects)
                deleted.append(before)

            await run_chain(event, self.hooks.handlers("delete", collection.name), final)
        return deleted

    async def _cascades(
        self, conn: Connection, writer: WriteCompiler, collection: CollectionDef, tenant: str | None, ids: list[str]
    ) -> list[Effect]:
        """What the database's ``on_delete`` actions will do when ``ids`` go (read first, announced after)."""

        async def records(c: CollectionDef, record_ids: list[str]) -> list[dict[str, Any]]:
            return await self.rows.records(conn, c, tenant, record_ids)

        return await cascade_effects(
            conn, collection, ids, collections=self.catalog.current(), writer=writer, records=records
        )

    async def _announce(self, conn: Connection, tenant: str | None, effects: list[Effect]) -> None:
        for effect in effects:
            await self.rows.emit(conn, effect.collection, tenant, effect.kind, record=effect.record, old=effect.old)

    # --- put -----------------------------------------------------------------------------------
    async def put(
        self,
        ctx: RequestContext,
        name: str,
        record_id: str,
        body: Any,
        *,
        returning: ReadQuery | None = None,
    ) -> WriteResult:
        """Replace the row ``record_id`` with ``body`` (absent fields get their default).

        PUT never creates a row: an id the caller may not update is a 404,
        whether no row has it, another owner's row does, or another tenant's.
        Ids are the primary key of all tenants' rows together, so a PUT that
        created rows would answer a free id (created) and an id taken in
        another tenant (refused) differently, telling a caller which ids exist
        elsewhere (checklist 37). Rows are created with POST.
        """
        collection = await self.catalog.require(name)
        record_id = normalize_id(record_id)
        if isinstance(body, dict) and "id" in body and str(body["id"]).lower() == record_id:
            body = {k: v for k, v in body.items() if k != "id"}
        validate_row(collection, body, partial=False, dialect=self.dialect, locale=ctx.locale)
        access = await resolve_access(self.rbac, ctx, collection, "update")
        tenant = access.tenant_id
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self.rows.representation_access(ctx, collection, returning)
        async with self.rows.scope(tenant, write=True) as conn:
            writer = self.rows.writer()
            targets = await self._targets(conn, writer, collection, access, query=ReadQuery(), ids=[record_id])
            if not targets:
                raise NotFound("data.record_not_found", hint="data.put_replaces_only_hint")
            records = await self._update_rows(
                ctx, conn, collection, writer, tenant=tenant, targets=targets, body=_replacement(collection, body)
            )
            body_out = await self.rows.representation(conn, collection, returning, view, records=records)
        return WriteResult(body_out, len(records), [r["id"] for r in records])


def _replacement(collection: CollectionDef, body: dict[str, Any]) -> dict[str, Any]:
    """A PUT body made complete: every field not given goes back to its default (or NULL)."""
    out = dict(body)
    for f in collection.column_fields:
        if f.name in out or f.name == collection.owner_field or f.default == NOW:
            continue
        default = f.default
        out[f.name] = default.isoformat() if isinstance(default, dt.date) else default
    return out


class _LostRace(Exception):
    """An upsert's INSERT met a row with its key that another transaction had just written."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row


def _conflict_key(collection: CollectionDef, columns: tuple[str, ...], row: dict[str, Any]) -> dict[str, Any] | None:
    """The values of ``row`` that an upsert matches on (a tenant-scoped row's tenant aside: `find_conflict`
    adds it), or None when one is NULL: NULLs are distinct in a unique index (both databases), so such a
    row never conflicts."""
    key = {c: row.get(c) for c in _conflict_sql_target(collection, columns) if c != _tenant_of(collection)}
    return None if any(v is None for v in key.values()) else key


def _conflict_sql_target(collection: CollectionDef, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of the unique index ``columns`` name, as ``ON CONFLICT`` must list them.

    A tenant-scoped collection's unique fields and indexes all start with
    ``tenant_id`` (schema/ddl.py): a value is unique within a tenant.
    """
    tenant = _tenant_of(collection)
    rest = tuple(dict.fromkeys(c for c in columns if c != tenant))
    return (tenant, *rest) if tenant else rest


def _tenant_of(collection: CollectionDef) -> str | None:
    """The column every unique constraint of ``collection`` starts with (``tenant_id``), if any."""
    return "tenant_id" if collection.scope == "tenant" else None
