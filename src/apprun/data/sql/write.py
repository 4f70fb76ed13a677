"""Writes compiled to SQL: inserts, the rows a PATCH/DELETE targets, updates, deletes.

The service runs these inside the request's transaction. Names come from the
collection's definition and are quoted; values are bound parameters. Bulk
inserts become multi-row ``VALUES`` statements, split so that no statement
binds more than `MAX_PARAMS` values (both databases cap the count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apprun.data.access import Access
from apprun.data.query.ast import Condition, OrderItem
from apprun.data.schema.model import SYSTEM_COLUMNS, CollectionDef
from apprun.data.sql.expressions import Params, quote
from apprun.data.sql.filters import compile_conditions
from apprun.data.sql.select import SelectCompiler, ids_condition
from apprun.kernel.db.port import Dialect

__all__ = ["MAX_PARAMS", "Statement", "WriteCompiler"]

#: Bound values per statement (PostgreSQL allows 32767, SQLite 32766).
MAX_PARAMS = 30_000


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list[Any]


class WriteCompiler:
    def __init__(self, dialect: Dialect, reader: SelectCompiler) -> None:
        self.dialect = dialect
        self.reader = reader

    def columns(self, collection: CollectionDef, rows: list[dict[str, Any]]) -> list[str]:
        """The columns an insert of ``rows`` names: system columns, then fields in definition order."""
        present: set[str] = set()
        for row in rows:
            present.update(row)
        return [c for c in SYSTEM_COLUMNS if c in present] + [
            f.name for f in collection.column_fields if f.name in present
        ]

    def insert(
        self, collection: CollectionDef, rows: list[dict[str, Any]], *, returning: str | None = None
    ) -> list[Statement]:
        """``INSERT`` statements for ``rows`` (a column a row lacks is NULL), each ``RETURNING`` an expression
        of the row if given (one that refers to the table by its name; see `SelectCompiler.record_object`)."""
        if not rows:
            return []
        tail = f" RETURNING {returning}" if returning is not None else ""
        columns = self.columns(collection, rows)
        per_statement = max(1, MAX_PARAMS // len(columns))
        names = ", ".join(quote(c) for c in columns)
        out: list[Statement] = []
        for start in range(0, len(rows), per_statement):
            params = Params()
            tuples = []
            for row in rows[start : start + per_statement]:
                tuples.append("(" + ", ".join(params.add(row.get(c)) for c in columns) + ")")
            out.append(
                Statement(
                    f"INSERT INTO {quote(collection.name)} ({names}) VALUES {', '.join(tuples)}{tail}", params.values
                )
            )
        return out

    def target_ids(
        self,
        collection: CollectionDef,
        access: Access,
        where: tuple[Condition, ...],
        *,
        order: tuple[OrderItem, ...] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> Statement:
        """The ids of the rows a PATCH/DELETE touches, locked on PostgreSQL until the transaction ends."""
        params = Params()
        alias = "t1"
        conds = self.reader.access_predicates(collection, alias, access, params)
        conds += compile_conditions(where, collection, alias, self.dialect, params)
        clause = " AND ".join(conds) if conds else "TRUE"
        sql = f"SELECT {alias}.id FROM {quote(collection.name)} {alias} WHERE {clause}"
        if order or limit is not None or offset:
            sql += " ORDER BY " + self.reader.order_clause(collection, alias, order, params)
            sql += self.reader.paging_clause(limit, offset, params, cap=None)
        if self.dialect == "postgres":
            sql += f" FOR UPDATE OF {alias}"
        return Statement(sql, params.values)

    def update(self, collection: CollectionDef, values: dict[str, Any], ids: list[str]) -> Statement:
        """Set ``values`` (columns, already bound-ready, ``updated_at`` included) on the rows ``ids``."""
        params = Params()
        sets = ", ".join(f"{quote(c)} = {params.add(v)}" for c, v in values.items())
        where = ids_condition("id", ids, self.dialect, params)
        return Statement(f"UPDATE {quote(collection.name)} SET {sets} WHERE {where}", params.values)

    def referencing_ids(self, child: CollectionDef, field: str, ids: list[str]) -> Statement:
        """The ids of ``child`` rows whose relation ``field`` points at one of ``ids``, locked on PostgreSQL."""
        params = Params()
        where = ids_condition(quote(field), ids, self.dialect, params)
        lock = " FOR UPDATE" if self.dialect == "postgres" else ""
        return Statement(f"SELECT id FROM {quote(child.name)} WHERE {where} ORDER BY id{lock}", params.values)

    def delete(self, collection: CollectionDef, ids: list[str]) -> Statement:
        params = Params()
        where = ids_condition("id", ids, self.dialect, params)
        return Statement(f"DELETE FROM {quote(collection.name)} WHERE {where}", params.values)

    def find_conflict(self, collection: CollectionDef, tenant_id: str | None, key: dict[str, Any]) -> Statement:
        """The id of the row whose ``key`` columns equal the given values (an upsert's conflict target).

        Locked on PostgreSQL, so the update that follows sees the row as it is
        until this transaction ends. The tenant is part of every unique
        constraint of a tenant-scoped collection (see schema/ddl.py), so it is part of
        the key here whatever ``DATA_TENANT_PREDICATE`` says.
        """
        params = Params()
        conds = [f"tenant_id = {params.add(tenant_id)}"] if collection.scope == "tenant" else []
        conds += [f"{quote(c)} = {params.add(v)}" for c, v in key.items()]
        lock = " FOR UPDATE" if self.dialect == "postgres" else ""
        return Statement(
            f"SELECT id FROM {quote(collection.name)} WHERE {' AND '.join(conds)} LIMIT 1{lock}", params.values
        )

    def insert_unless_conflict(
        self, collection: CollectionDef, row: dict[str, Any], target: tuple[str, ...], *, lock: bool,
        returning: str = "id",
    ) -> Statement:  # fmt: skip
        """``INSERT`` of one row that writes nothing when a row with the same ``target`` values exists.

        ``RETURNING`` (the id, or an expression of the row as for `insert`)
        tells which happened: a row back means inserted, none means a
        conflict (the same on both databases). ``target`` is the
        columns of a unique index, the tenant first for a tenant-scoped
        collection, so another tenant's row can never conflict, let alone be
        changed. With ``lock``, the conflicting row is locked (PostgreSQL locks
        every row an ``ON CONFLICT DO UPDATE`` meets, even when its ``WHERE``
        updates none), so the caller can read it and update it, rules and
        hooks included, before anyone else does.
        """
        columns = self.columns(collection, [row])
        params = Params()
        values = ", ".join(params.add(row.get(c)) for c in columns)
        first = quote(target[0])
        action = f"DO UPDATE SET {first} = excluded.{first} WHERE FALSE" if lock else "DO NOTHING"
        return Statement(
            f"INSERT INTO {quote(collection.name)} ({', '.join(quote(c) for c in columns)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(quote(c) for c in target)}) {action} RETURNING {returning}",
            params.values,
        )

    def existing_references(self, target: CollectionDef, tenant_id: str | None, ids: list[str]) -> Statement:
        """How many of ``ids`` are rows of ``target`` that the writer's tenant may point at."""
        params = Params()
        conds = [ids_condition("id", ids, self.dialect, params)]
        if target.scope == "tenant":
            conds.append(f"tenant_id = {params.add(tenant_id)}")
        return Statement(f"SELECT count(*) FROM {quote(target.name)} WHERE {' AND '.join(conds)}", params.values)
