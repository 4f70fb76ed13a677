"""Writes on collections: create (bulk, upsert), update, delete, put — rules, hooks, one event per row."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from apprun.data.access import resolve_access
from apprun.data.cascades import Effect, cascade_effects
from apprun.data.hooks import WriteEvent, run_chain
from apprun.data.model import CollectionDef
from apprun.data.query_ast import FieldPath, Filter, ReadQuery
from apprun.data.rows import MAX_BULK_ROWS, Resolution, RowsBase, WriteResult, _check_single, normalize_id
from apprun.data.sql_select import Access
from apprun.data.sql_write import WriteCompiler
from apprun.data.validation import NOW, validate_row
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Connection
from apprun.kernel.errors import ApiError, BadRequest, InternalError, NotFound, UniqueViolation

__all__ = ["DataWrites"]


class DataWrites(RowsBase):
    """Create, update, delete and put: validated first, in one transaction, hooks per row, one event per row."""

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
        tenant_header: str | None = None,
        expect_one: bool = False,
    ) -> WriteResult:
        """Insert one row (a JSON object) or many (an array), all or nothing; upsert with ``resolution``."""
        collection = await self.catalog.require(name)
        items = body if isinstance(body, list) else [body]
        if isinstance(body, list) and not body:
            raise BadRequest("data.empty_body")
        if len(items) > MAX_BULK_ROWS:
            raise BadRequest("data.too_many_rows", params={"max": MAX_BULK_ROWS})
        access = await resolve_access(self.rbac, ctx, collection, "create", tenant_header=tenant_header)
        update_access: Access | None = None
        conflict_columns: tuple[str, ...] = ()
        if resolution is not None:
            conflict_columns = self._conflict_target(collection, on_conflict)
            if resolution == "merge-duplicates":
                update_access = await resolve_access(self.rbac, ctx, collection, "update", tenant_header=tenant_header)
        tenant = access.tenant_id
        bulk = resolution is None and not self.hooks.has("create", name)
        # Validate everything before touching the database: one bad row, nothing written.
        rows = self._validated(ctx, collection, items, tenant) if bulk else []
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self._representation_access(ctx, collection, returning, tenant_header)
        async with self._scope(tenant, write=True) as conn:
            collections = self.catalog.current()
            writer = WriteCompiler(self.dialect, self._reader(collections))
            if bulk:
                await self._check_references(conn, collection, tenant, rows)
                for stmt in writer.insert(collection, rows):
                    await conn.execute(stmt.sql, *stmt.params)
                ids = [r["id"] for r in rows]
                records = await self._records(conn, collection, tenant, ids)
                for record in records:
                    await self._emit(conn, collection, tenant, "created", record=record, old=None)
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
                        access=access,
                        update_access=update_access,
                        resolution=resolution,
                        conflict_columns=conflict_columns,
                    )
                    if written is not None:
                        records.append(written)
            _check_single(expect_one, len(records))
            body_out = await self._representation(conn, collection, returning, view, records=records)
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
            rows.append({**self._system_values(ctx, collection, tenant), **values})
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
        access: Access,
        update_access: Access | None,
        resolution: Resolution | None,
        conflict_columns: tuple[str, ...],
    ) -> dict[str, Any] | None:
        """One row through the create hooks (an upsert through update's when it hits an existing row)."""
        if not isinstance(item, dict):
            validate_row(collection, item, partial=False, dialect=self.dialect, locale=ctx.locale)  # raises
        existing: str | None = None
        if resolution is not None:
            values = validate_row(collection, item, partial=False, dialect=self.dialect, locale=ctx.locale)
            key = {c: values.get(c) for c in conflict_columns}
            if all(v is not None for v in key.values()):
                stmt = writer.find_conflict(collection, Access(tenant_id=tenant), key)
                existing = await conn.fetchval(stmt.sql, *stmt.params)
        if existing is not None:
            if resolution == "ignore-duplicates":
                return None
            if update_access is None:  # pragma: no cover - set whenever resolution is merge-duplicates
                raise InternalError()
            stmt = writer.target_ids(collection, update_access, (Filter(FieldPath("id"), "eq", existing),))
            if not await conn.fetchval(stmt.sql, *stmt.params):
                raise UniqueViolation(code="data.unique_violation", params={"columns": ",".join(conflict_columns)})
            updated = await self._update_rows(
                ctx, conn, collection, writer, tenant=tenant, targets=[existing], body=dict(item)
            )
            return updated[0] if updated else None
        event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="create", data=dict(item))

        async def final(e: WriteEvent) -> None:
            values = validate_row(collection, e.data, partial=False, dialect=self.dialect, locale=ctx.locale)
            row = {**self._system_values(ctx, collection, tenant), **values}
            await self._check_references(conn, collection, tenant, [row])
            for stmt in writer.insert(collection, [row]):
                await conn.execute(stmt.sql, *stmt.params)
            e.record = (await self._records(conn, collection, tenant, [row["id"]]))[0]
            await self._emit(conn, collection, tenant, "created", record=e.record, old=None)

        await run_chain(event, self.hooks.handlers("create", collection.name), final)
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
        tenant_header: str | None = None,
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
        access = await resolve_access(self.rbac, ctx, collection, "update", tenant_header=tenant_header)
        tenant = access.tenant_id
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self._representation_access(ctx, collection, returning, tenant_header)
        async with self._scope(tenant, write=True) as conn:
            collections = self.catalog.current()
            writer = WriteCompiler(self.dialect, self._reader(collections))
            targets = await self._targets(conn, writer, collection, access, query=query, ids=ids)
            records = await self._update_rows(ctx, conn, collection, writer, tenant=tenant, targets=targets, body=body)
            _check_single(expect_one, len(records))
            body_out = await self._representation(conn, collection, returning, view, records=records)
        return WriteResult(body_out, len(records), [r["id"] for r in records])

    def _refuse_unfiltered(self, query: ReadQuery, ids: list[str] | None) -> None:
        if ids is None and not query.where and not self.settings.data_allow_unfiltered_writes:
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
        olds = await self._records(conn, collection, tenant, targets)
        if not self.hooks.has("update", collection.name):
            values = validate_row(collection, body, partial=True, dialect=self.dialect, locale=ctx.locale)
            await self._check_references(conn, collection, tenant, [values])
            stmt = writer.update(collection, {**values, "updated_at": self._now()}, targets)
            await conn.execute(stmt.sql, *stmt.params)
            news = await self._records(conn, collection, tenant, targets)
            for old, new in zip(olds, news, strict=True):
                await self._emit(conn, collection, tenant, "updated", record=new, old=old)
            return news
        out: list[dict[str, Any]] = []
        for old in olds:
            event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="update", data=dict(body), old=old)

            async def final(e: WriteEvent, before: dict[str, Any] = old) -> None:
                values = validate_row(collection, e.data, partial=True, dialect=self.dialect, locale=ctx.locale)
                await self._check_references(conn, collection, tenant, [values])
                stmt = writer.update(collection, {**values, "updated_at": self._now()}, [before["id"]])
                await conn.execute(stmt.sql, *stmt.params)
                e.record = (await self._records(conn, collection, tenant, [before["id"]]))[0]
                await self._emit(conn, collection, tenant, "updated", record=e.record, old=before)

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
        tenant_header: str | None = None,
        ids: list[str] | None = None,
        expect_one: bool = False,
    ) -> WriteResult:
        collection = await self.catalog.require(name)
        self._refuse_unfiltered(query, ids)
        access = await resolve_access(self.rbac, ctx, collection, "delete", tenant_header=tenant_header)
        tenant = access.tenant_id
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self._representation_access(ctx, collection, returning, tenant_header)
        async with self._scope(tenant, write=True) as conn:
            collections = self.catalog.current()
            writer = WriteCompiler(self.dialect, self._reader(collections))
            targets = await self._targets(conn, writer, collection, access, query=query, ids=ids)
            olds = await self._records(conn, collection, tenant, targets)
            _check_single(expect_one, len(olds))
            # The representation is read before the rows go (embeds included).
            body_out = await self._representation(conn, collection, returning, view, records=olds)
            deleted: list[dict[str, Any]] = []
            if not self.hooks.has("delete", name):
                effects = await self._cascades(conn, writer, collection, tenant, targets)
                if targets:
                    stmt = writer.delete(collection, targets)
                    await conn.execute(stmt.sql, *stmt.params)
                for old in olds:
                    await self._emit(conn, collection, tenant, "deleted", record=None, old=old)
                await self._announce(conn, tenant, effects)
                deleted = olds
            else:
                for old in olds:
                    event = WriteEvent(collection=collection, ctx=ctx, conn=conn, action="delete", old=old)

                    async def final(e: WriteEvent, before: dict[str, Any] = old) -> None:
                        effects = await self._cascades(conn, writer, collection, tenant, [before["id"]])
                        stmt = writer.delete(collection, [before["id"]])
                        await conn.execute(stmt.sql, *stmt.params)
                        await self._emit(conn, collection, tenant, "deleted", record=None, old=before)
                        await self._announce(conn, tenant, effects)
                        deleted.append(before)

                    await run_chain(event, self.hooks.handlers("delete", name), final)
                if returning is not None and len(deleted) != len(olds):
                    kept = {r["id"] for r in deleted}
                    body_out = json.dumps([r for r in json.loads(body_out or "[]") if r.get("id") in kept])
        return WriteResult(body_out, len(deleted), [r["id"] for r in deleted])

    async def _cascades(
        self, conn: Connection, writer: WriteCompiler, collection: CollectionDef, tenant: str | None, ids: list[str]
    ) -> list[Effect]:
        """What the database's ``on_delete`` actions will do when ``ids`` go (read first, announced after)."""

        async def records(c: CollectionDef, record_ids: list[str]) -> list[dict[str, Any]]:
            return await self._records(conn, c, tenant, record_ids)

        return await cascade_effects(
            conn, collection, ids, collections=self.catalog.current(), writer=writer, records=records
        )

    async def _announce(self, conn: Connection, tenant: str | None, effects: list[Effect]) -> None:
        for effect in effects:
            await self._emit(conn, effect.collection, tenant, effect.kind, record=effect.record, old=effect.old)

    # --- put -----------------------------------------------------------------------------------
    async def put(
        self,
        ctx: RequestContext,
        name: str,
        record_id: str,
        body: Any,
        *,
        returning: ReadQuery | None = None,
        tenant_header: str | None = None,
    ) -> WriteResult:
        """Replace the row ``record_id`` with ``body`` (absent fields get their default), or create it."""
        collection = await self.catalog.require(name)
        record_id = normalize_id(record_id)
        if isinstance(body, dict) and "id" in body and str(body["id"]).lower() == record_id:
            body = {k: v for k, v in body.items() if k != "id"}
        values = validate_row(collection, body, partial=False, dialect=self.dialect, locale=ctx.locale)
        update_access = await resolve_access(self.rbac, ctx, collection, "update", tenant_header=tenant_header)
        tenant = update_access.tenant_id
        # Whether the caller may create is asked now and told only if the row turns out not to exist.
        create_refused: ApiError | None = None
        try:
            await resolve_access(self.rbac, ctx, collection, "create", tenant_header=tenant_header)
        except ApiError as exc:
            create_refused = exc
        # Everything that may need another connection (RBAC, the catalog) before the transaction takes one.
        view = await self._representation_access(ctx, collection, returning, tenant_header)
        async with self._scope(tenant, write=True) as conn:
            collections = self.catalog.current()
            writer = WriteCompiler(self.dialect, self._reader(collections))
            visible = await self._targets(
                conn, writer, collection, Access(tenant_id=tenant), query=ReadQuery(), ids=[record_id]
            )
            if visible:
                allowed = await self._targets(
                    conn, writer, collection, update_access, query=ReadQuery(), ids=[record_id]
                )
                if not allowed:
                    raise NotFound("data.record_not_found")
                records = await self._update_rows(
                    ctx, conn, collection, writer, tenant=tenant, targets=allowed, body=_replacement(collection, body)
                )
                created = False
            else:
                if create_refused is not None:
                    raise create_refused
                row = {**self._system_values(ctx, collection, tenant, record_id), **values}
                await self._check_references(conn, collection, tenant, [row])
                try:
                    for stmt in writer.insert(collection, [row]):
                        await conn.execute(stmt.sql, *stmt.params)
                except UniqueViolation as exc:
                    if exc.constraint in {f"{name}_pkey", f"pk_{name}", f"{name}.id"}:
                        # The id is another tenant's row: answered like any row the caller cannot see.
                        raise NotFound("data.record_not_found") from None
                    raise
                records = await self._records(conn, collection, tenant, [record_id])
                for record in records:
                    await self._emit(conn, collection, tenant, "created", record=record, old=None)
                created = True
            body_out = await self._representation(conn, collection, returning, view, records=records)
        return WriteResult(body_out, len(records), [r["id"] for r in records], created=created)


def _replacement(collection: CollectionDef, body: dict[str, Any]) -> dict[str, Any]:
    """A PUT body made complete: every field not given goes back to its default (or NULL)."""
    out = dict(body)
    for f in collection.column_fields:
        if f.name in out or f.name == collection.owner_field or f.default == NOW:
            continue
        default = f.default
        out[f.name] = default.isoformat() if isinstance(default, dt.date) else default
    return out
