"""Reads compiled to one SQL statement whose single value is the JSON reply.

The database builds the body (``json_agg``/``json_build_object`` on
PostgreSQL, ``json_group_array``/``json_object`` on SQLite), embedded
relations included, so Python passes bytes through — the way PostgREST is
fast. Every collection a query touches gets its access predicate (tenant,
owner) ANDed in *before* the client's filters, so a filter can only narrow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from apprun.data.access import Access
from apprun.data.query.ast import Embed, EmbedOptions, FieldPath, OrderItem, ReadQuery, SelectField, SelectItem, Star
from apprun.data.schema.model import SYSTEM_COLUMNS, CollectionDef, FieldDef
from apprun.data.sql.expressions import Deferred, Params, cast_expr, json_value, path_expr, quote, sort_keys
from apprun.data.sql.filters import compile_conditions
from apprun.kernel.db.port import Dialect
from apprun.kernel.errors import BadRequest

__all__ = ["CompiledRead", "Relation", "SelectCompiler", "ids_condition", "resolve_relation"]


@dataclass(frozen=True)
class Relation:
    kind: Literal["to_one", "to_many", "many_to_many"]
    target: CollectionDef
    #: to_one: the parent's column holding the target id; to_many: the target's column holding the parent id.
    column: str
    #: many_to_many: the join collection, its column to the parent, its column to the target.
    join: CollectionDef | None = None
    join_parent: str = ""
    join_target: str = ""


@dataclass(frozen=True)
class CompiledRead:
    sql: str
    params: list[object]
    count_sql: str | None = None
    count_params: list[object] = field(default_factory=list)


def _relation_fields(collection: CollectionDef, target: str) -> list[FieldDef]:
    return [f for f in collection.column_fields if f.type == "relation" and f.collection == target]


def resolve_relation(parent: CollectionDef, embed: Embed, collections: dict[str, CollectionDef]) -> Relation:
    """Which relation ``embed`` means, as PostgREST resolves it (fields, then foreign keys, then junctions)."""
    name, hint = embed.relation, embed.hint

    def known(target_name: str | None) -> CollectionDef:
        target = collections.get(target_name or "")
        if target is None:
            raise BadRequest("data.unknown_relation", params={"relation": name, "collection": parent.name})
        return target

    own = parent.field(name)
    if own is not None and own.type == "relation":
        if own.many:
            return _junction(parent, known(own.collection), known(own.through), name)
        return Relation("to_one", known(own.collection), own.name)
    target = collections.get(name)
    if target is None:
        raise BadRequest("data.unknown_relation", params={"relation": name, "collection": parent.name})
    candidates: list[Relation] = []
    for f in _relation_fields(parent, target.name):
        if hint in (None, f.name):
            candidates.append(Relation("to_one", target, f.name))
    for f in _relation_fields(target, parent.name):
        if hint in (None, f.name):
            candidates.append(Relation("to_many", target, f.name))
    for f in parent.fields:
        if f.many and f.collection == target.name and hint in (None, f.name, f.through):
            candidates.append(_junction(parent, target, known(f.through), f.name))
    if not candidates:
        for junction in collections.values():
            if hint not in (None, junction.name):
                continue
            to_parent = _relation_fields(junction, parent.name)
            to_target = _relation_fields(junction, target.name)
            if to_parent and to_target and junction.name not in (parent.name, target.name):
                candidates.append(_junction(parent, target, junction, name))
    if not candidates:
        raise BadRequest("data.unknown_relation", params={"relation": name, "collection": parent.name})
    if len(candidates) > 1:
        raise BadRequest(
            "data.ambiguous_relation",
            params={"relation": name},
            details={"candidates": [c.column or (c.join.name if c.join else "") for c in candidates]},
            hint="data.ambiguous_relation_hint",
        )
    return candidates[0]


def _junction(parent: CollectionDef, target: CollectionDef, join: CollectionDef, name: str) -> Relation:
    to_parent = _relation_fields(join, parent.name)
    to_target = [f for f in _relation_fields(join, target.name) if f not in to_parent or parent.name != target.name]
    if len(to_parent) != 1 or len(to_target) < 1:
        raise BadRequest("data.unknown_relation", params={"relation": name, "collection": parent.name})
    target_field = next((f for f in to_target if f.name != to_parent[0].name), to_target[0])
    return Relation("many_to_many", target, "", join, to_parent[0].name, target_field.name)


class SelectCompiler:
    def __init__(
        self,
        dialect: Dialect,
        collections: dict[str, CollectionDef],
        *,
        tenant_predicate: bool = True,
        max_rows: int | None = 1000,
    ) -> None:
        self.dialect = dialect
        self.collections = collections
        self.tenant_predicate = tenant_predicate
        #: The most rows a read returns (None: no cap, when something else bounds them).
        self.max_rows = max_rows
        self._aliases = 0

    # --- who may see what ---------------------------------------------------
    def collections_used(self, collection: CollectionDef, select: tuple[SelectItem, ...]) -> set[str]:
        """Every collection an embed reaches, to check access before compiling."""
        used = {collection.name}
        for item in select:
            if isinstance(item, Embed):
                relation = resolve_relation(collection, item, self.collections)
                used |= self.collections_used(relation.target, item.select)
                if relation.join is not None:
                    used.add(relation.join.name)
        return used

    def access_predicates(self, collection: CollectionDef, alias: str, access: Access, params: Params) -> list[str]:
        out: list[str] = []
        if collection.scope == "tenant" and self.tenant_predicate:
            out.append(f"{alias}.tenant_id = {params.add(access.tenant_id)}")
        if access.owner_column is not None:
            out.append(f"{alias}.{quote(access.owner_column)} = {params.add(access.owner_id)}")
        return out

    def _alias(self) -> str:
        self._aliases += 1
        return f"t{self._aliases}"

    # --- the row object ------------------------------------------------------
    def _visible(self, collection: CollectionDef) -> list[tuple[str, str]]:
        from apprun.data.sql.expressions import SYSTEM_TYPES

        cols = [(name, SYSTEM_TYPES[name]) for name in SYSTEM_COLUMNS]
        return cols + [(f.name, f.type) for f in collection.column_fields if not f.hidden]

    def _raw_value(self, collection: CollectionDef, alias: str, item: SelectField, params: Params) -> tuple[str, str]:
        """(SQL, field type) of a selected column, JSON path or cast, before rendering as JSON."""
        if item.path is None:  # pragma: no cover - count() is handled by the aggregate path
            raise BadRequest("data.invalid_query", details={"select": "count()"})
        sql, kind = path_expr(collection, alias, item.path, self.dialect, params, purpose="select")
        if item.cast:
            sql, kind = cast_expr(sql, item.cast, self.dialect, kind)
        return sql, kind

    def _field_value(self, collection: CollectionDef, alias: str, item: SelectField, params: Params) -> tuple[str, str]:
        sql, kind = self._raw_value(collection, alias, item, params)
        return json_value(sql, kind, self.dialect), kind

    def _object(self, pairs: list[tuple[str, str]]) -> str:
        if self.dialect == "postgres":
            if len(pairs) <= 50:
                inner = ", ".join(f"'{_key(k)}', {v}" for k, v in pairs)
                return f"json_build_object({inner})"
            cols = ", ".join(f"{v} AS {quote(k)}" for k, v in pairs)
            return f"(SELECT row_to_json(_r) FROM (SELECT {cols}) _r)"
        inner = ", ".join(f"'{_key(k)}', {v}" for k, v in pairs)
        return f"json_object({inner})"

    def record_object(self, collection: CollectionDef, alias: str) -> str:
        """The JSON object of one row as ``select=*`` shows it (what `row_object` gives for a lone star).

        It names no parameter and no other table, so it can follow an
        ``INSERT``'s ``RETURNING`` with the table's name as ``alias``.
        """
        return self._object(self._star_pairs(collection, alias))

    def _star_pairs(self, collection: CollectionDef, alias: str) -> list[tuple[str, str]]:
        return [
            (name, json_value(f"{alias}.{quote(name)}", kind, self.dialect)) for name, kind in self._visible(collection)
        ]

    def _embed_json(self, sql: str) -> str:
        """A JSON-valued subquery placed inside another object."""
        return sql if self.dialect == "postgres" else f"json({sql})"

    def row_object(
        self,
        collection: CollectionDef,
        alias: str,
        select: tuple[SelectItem, ...],
        params: Params,
        access: dict[str, Access],
        *,
        options: dict[str, EmbedOptions],
        prefix: str,
        where: list[str],
    ) -> str:
        """The JSON object of one row, embeds included; adds !inner conditions to ``where``."""
        pairs: list[tuple[str, str]] = []
        seen: set[str] = set()
        for item in select:
            if isinstance(item, Star):
                pairs.extend(self._star_pairs(collection, alias))
            elif isinstance(item, SelectField):
                if item.aggregate:
                    raise BadRequest("data.aggregate_in_embed")
                value, _ = self._field_value(collection, alias, item, params)
                pairs.append((item.alias or item.path.label() if item.path else "count", value))
            else:
                key = item.key
                path = f"{prefix}{key}"
                relation = resolve_relation(collection, item, self.collections)
                opts = options.get(path, EmbedOptions())
                if item.spread:
                    if relation.kind != "to_one":
                        raise BadRequest("data.spread_needs_to_one", params={"relation": key})
                    pairs.extend(self._spread(relation, alias, item, params, access))
                    continue
                sub, exists = self._embedded(
                    relation, alias, item, params, access, opts=opts, options=options, prefix=path + "."
                )
                pairs.append((key, self._embed_json(sub)))
                if item.inner:
                    where.append(exists)
            if pairs and pairs[-1][0] in seen and not isinstance(item, Star):
                raise BadRequest("data.duplicate_key", params={"key": pairs[-1][0]})
            seen.update(k for k, _ in pairs)
        return self._object(pairs)

    def _join_condition(
        self, relation: Relation, parent_alias: str, alias: str, params: Params, access: dict[str, Access]
    ) -> list[str]:
        if relation.kind == "to_one":
            return [f"{alias}.id = {parent_alias}.{quote(relation.column)}"]
        if relation.kind == "to_many":
            return [f"{alias}.{quote(relation.column)} = {parent_alias}.id"]
        join = relation.join
        if join is None:  # pragma: no cover - resolve_relation sets it for many_to_many
            raise BadRequest("data.unknown_relation", params={"relation": "", "collection": ""})
        j = self._alias()
        conds = [f"{j}.{quote(relation.join_parent)} = {parent_alias}.id"]
        conds += self.access_predicates(join, j, access[join.name], params)
        return [
            f"{alias}.id IN (SELECT {j}.{quote(relation.join_target)} FROM {quote(join.name)} {j} "
            f"WHERE {' AND '.join(conds)})"
        ]

    def _embedded(
        self,
        relation: Relation,
        parent_alias: str,
        item: Embed,
        params: Params,
        access: dict[str, Access],
        *,
        opts: EmbedOptions,
        options: dict[str, EmbedOptions],
        prefix: str,
    ) -> tuple[str, str]:
        target = relation.target
        alias = self._alias()
        where = self._join_condition(relation, parent_alias, alias, params, access)
        where += self.access_predicates(target, alias, access[target.name], params)
        where += compile_conditions(opts.where, target, alias, self.dialect, params)
        inner_where: list[str] = []
        row = self.row_object(
            target, alias, item.select, params, access, options=options, prefix=prefix, where=inner_where
        )
        where += inner_where
        table = f"{quote(target.name)} {alias}"
        exists = f"EXISTS (SELECT 1 FROM {table} WHERE {' AND '.join(where)})"
        if relation.kind == "to_one":
            return f"(SELECT {row} FROM {table} WHERE {' AND '.join(where)} LIMIT 1)", exists
        order = self.order_clause(target, alias, opts.order, params)
        paging = self.paging_clause(opts.limit, opts.offset, params, cap=None)
        inner = f"SELECT {row} AS row FROM {table} WHERE {' AND '.join(where)} ORDER BY {order}{paging}"
        if self.dialect == "postgres":
            return f"(SELECT coalesce(json_agg(_e.row), '[]'::json) FROM ({inner}) _e)", exists
        return f"(SELECT coalesce(json_group_array(json(_e.row)), '[]') FROM ({inner}) _e)", exists

    def _spread(
        self,
        relation: Relation,
        parent_alias: str,
        item: Embed,
        params: Params,
        access: dict[str, Access],
    ) -> list[tuple[str, str]]:
        target = relation.target
        pairs: list[tuple[str, str]] = []
        for sub in item.select:
            if isinstance(sub, Embed):
                raise BadRequest("data.spread_nested_unsupported")
            fields = [SelectField(path=_plain(n)) for n, _ in self._visible(target)] if isinstance(sub, Star) else [sub]
            for f in fields:
                alias = self._alias()
                where = self._join_condition(relation, parent_alias, alias, params, access)
                where += self.access_predicates(target, alias, access[target.name], params)
                value, _ = self._field_value(target, alias, f, params)
                key = f.alias or (f.path.label() if f.path else "count")
                pairs.append(
                    (key, f"(SELECT {value} FROM {quote(target.name)} {alias} WHERE {' AND '.join(where)} LIMIT 1)")
                )
        return pairs

    # --- ordering and paging ----------------------------------------------------
    def _order_terms(self, collection: CollectionDef, alias: str, item: OrderItem, params: Params) -> list[str]:
        expr, kind = path_expr(collection, alias, item.path, self.dialect, params, purpose="order")
        return [self._term(key, item.desc, item.nulls) for key in sort_keys(expr, kind, self.dialect)]

    def _term(self, expr: str, desc: bool, nulls: Literal["first", "last"] | None) -> str:
        if nulls is None and self.dialect == "sqlite":
            # PostgreSQL's default (NULLs sort as the largest value); SQLite's is the opposite.
            nulls = "first" if desc else "last"
        return f"{expr} {'DESC' if desc else 'ASC'}{f' NULLS {nulls.upper()}' if nulls else ''}"

    def order_clause(self, collection: CollectionDef, alias: str, order: tuple[OrderItem, ...], params: Params) -> str:
        """``ORDER BY``'s terms (without the keywords), ending with the id as a tie-breaker."""
        parts = [term for item in order for term in self._order_terms(collection, alias, item, params)]
        # A stable tie-breaker: ids are time-ordered, so this is creation order.
        parts.append(f"{alias}.id ASC")
        return ", ".join(parts)

    def paging_clause(
        self, limit: int | None, offset: int | Deferred | None, params: Params, *, cap: int | None
    ) -> str:
        """`` LIMIT … OFFSET …`` (with its leading space, or empty); ``cap`` bounds the limit."""
        if cap is not None:
            limit = cap if limit is None else min(limit, cap)
        out = ""
        if limit is not None:
            out += f" LIMIT {params.add(limit)}"
        if offset:
            out += (" LIMIT -1" if limit is None and self.dialect == "sqlite" else "") + f" OFFSET {params.add(offset)}"
        return out

    # --- the whole read ----------------------------------------------------------
    def compile(
        self,
        collection: CollectionDef,
        query: ReadQuery,
        access: dict[str, Access],
        *,
        limit: int | None,
        offset: int | Deferred | None,
        with_count: bool,
        ids: list[str] | None = None,
    ) -> CompiledRead:
        """The read of ``query``; ``ids`` limits it to those rows (the rows a write touched)."""
        self._aliases = 0
        if any(isinstance(i, SelectField) and (i.aggregate or i.path is None) for i in query.select):
            return self._aggregate(collection, query, access, limit=limit, offset=offset, with_count=with_count)
        params = Params()
        alias, row, clause = self._rows(collection, query, access, ids, params)
        order = self.order_clause(collection, alias, query.order, params)
        paging = self.paging_clause(limit, offset, params, cap=self.max_rows)
        inner = f"SELECT {row} AS row FROM {quote(collection.name)} {alias} WHERE {clause} ORDER BY {order}{paging}"
        sql = self._json_array(inner)
        count_sql, count_params = (None, [])
        if with_count:
            # The same rows without paging; the row expression stays so every parameter is used
            # (both databases drop the unused column when they flatten the subquery).
            cparams = Params()
            calias, crow, cclause = self._rows(collection, query, access, ids, cparams)
            count_sql = (
                f"SELECT count(*) FROM (SELECT {crow} AS row FROM {quote(collection.name)} {calias} WHERE {cclause}) _c"
            )
            count_params = cparams.values
        return CompiledRead(sql, params.values, count_sql, count_params)

    def _rows(
        self, collection: CollectionDef, query: ReadQuery, access: dict[str, Access], ids: list[str] | None,
        params: Params,
    ) -> tuple[str, str, str]:  # fmt: skip
        """The outer alias, the row expression and the ``WHERE`` clause of the read's rows (paging aside)."""
        self._aliases = 0
        alias = self._alias()
        where = self.access_predicates(collection, alias, access[collection.name], params)
        if ids is not None:
            where.append(ids_condition(f"{alias}.id", ids, self.dialect, params))
        where += compile_conditions(query.where, collection, alias, self.dialect, params)
        inner_where: list[str] = []
        row = self.row_object(
            collection, alias, query.select, params, access, options=query.embedded, prefix="", where=inner_where
        )
        where += inner_where
        return alias, row, " AND ".join(where) if where else "TRUE"

    def _aggregate(
        self,
        collection: CollectionDef,
        query: ReadQuery,
        access: dict[str, Access],
        *,
        limit: int | None,
        offset: int | Deferred | None,
        with_count: bool = False,
    ) -> CompiledRead:
        params = Params()
        alias = self._alias()
        pairs, groups, group_keys = self._aggregate_select(collection, alias, query, params)
        where = self.access_predicates(collection, alias, access[collection.name], params)
        where += compile_conditions(query.where, collection, alias, self.dialect, params)
        clause = " AND ".join(where) if where else "TRUE"
        group = f" GROUP BY {', '.join(groups)}" if groups else ""
        order_parts = [term for o in query.order for term in self._order_terms(collection, alias, o, params)]
        order_parts += [self._term(key, False, None) for key in group_keys]
        order = f" ORDER BY {', '.join(order_parts)}" if order_parts else ""
        row = self._object(pairs)
        unpaged = f"SELECT {row} AS row FROM {quote(collection.name)} {alias} WHERE {clause}{group}{order}"
        # Prefer: count counts the rows of the reply (the groups), as PostgREST does; paging comes last,
        # so the count uses every parameter but the paging's.
        count_sql = f"SELECT count(*) FROM ({unpaged}) _c" if with_count else None
        count_params = list(params.values)
        inner = unpaged + self.paging_clause(limit, offset, params, cap=self.max_rows)
        sql = self._json_array(inner)
        return CompiledRead(sql, params.values, count_sql, count_params if with_count else [])

    def _aggregate_select(
        self, collection: CollectionDef, alias: str, query: ReadQuery, params: Params
    ) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """An aggregate read's ``select``: the reply's (key, SQL) pairs, the ``GROUP BY`` terms and their sort keys."""
        pairs: list[tuple[str, str]] = []
        groups: list[str] = []
        group_keys: list[str] = []
        for item in query.select:
            if isinstance(item, Embed | Star):
                raise BadRequest("data.aggregate_with_embed_or_star")
            if item.path is None:  # count()
                pairs.append((item.alias or "count", "count(*)"))
                continue
            cast = item.input_cast if item.aggregate else item.cast
            # Group, aggregate and order on the values themselves; render them as JSON last.
            value, kind = self._raw_value(collection, alias, SelectField(path=item.path, cast=cast), params)
            if item.aggregate is None:
                groups.append(value)
                group_keys.extend(sort_keys(value, kind, self.dialect))
                pairs.append((item.alias or item.path.label(), json_value(value, kind, self.dialect)))
                continue
            agg = item.aggregate
            if agg in ("sum", "avg") and kind not in ("integer", "number"):
                raise BadRequest("data.aggregate_needs_number", params={"column": item.path.column})
            if agg in ("min", "max") and kind in ("boolean", "json"):
                # PostgreSQL has no min()/max() of boolean or jsonb (a 500 there, a value on SQLite).
                raise BadRequest(
                    "data.invalid_query",
                    details={"parameter": "select", "aggregate": agg, "column": item.path.column,
                             "expected": "a text, number, date or datetime value to take the min() or max() of"},
                )  # fmt: skip
            expr = f"{agg}({value})"
            result = {"count": "integer", "avg": "number"}.get(agg, kind)
            if agg == "avg" and self.dialect == "postgres":
                expr = f"({expr})::double precision"
            if item.cast:
                expr, result = cast_expr(expr, item.cast, self.dialect, result)
            pairs.append((item.alias or agg, json_value(expr, result, self.dialect)))
        return pairs, groups, group_keys

    def _json_array(self, inner: str) -> str:
        """The rows of ``inner`` (a ``row`` column) as one JSON array, and how many there are."""
        if self.dialect == "postgres":
            return f"SELECT coalesce(json_agg(_x.row), '[]'::json)::text, count(*) FROM ({inner}) _x"
        return f"SELECT coalesce(json_group_array(json(_x.row)), '[]'), count(*) FROM ({inner}) _x"


def ids_condition(column_sql: str, ids: list[str], dialect: Dialect, params: Params) -> str:
    """``column IN ids`` with one bound parameter, whatever the number of ids."""
    if dialect == "postgres":
        return f"{column_sql} = ANY({params.add(list(ids))}::text[])"
    return f"{column_sql} IN (SELECT value FROM json_each({params.add(json.dumps(list(ids)))}))"


def _key(name: str) -> str:
    """A JSON key as an SQL string literal body (names come from the schema or checked aliases)."""
    return name.replace("'", "''")


def _plain(name: str) -> FieldPath:
    return FieldPath(column=name)
