"""Horizontal filters (``col=op.value``, ``or=(…)``) compiled to SQL conditions.

Every value becomes a bound parameter of the column's type. Where the two
databases differ the meaning is kept, not the spelling: ``like`` is
case-sensitive on both (SQLite's LIKE is not, so it uses GLOB), ``match`` is
a regular expression (PostgreSQL's ``~``, a Python ``re`` function registered
on SQLite connections), JSON containment works on arrays (and on top-level
keys of objects), and full-text search uses a ``tsvector`` on PostgreSQL and
an FTS5 table on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from apprun.data.query.ast import BoolExpr, Condition, Filter
from apprun.data.schema.model import CollectionDef, FieldDef
from apprun.data.schema.validation import coerce_filter_value
from apprun.data.sql.expressions import (
    SYSTEM_TYPES,
    TEXT_TYPES,
    Deferred,
    Hole,
    Params,
    json_compare,
    path_expr,
    quote,
    text_value,
)
from apprun.kernel.db.port import Dialect
from apprun.kernel.errors import BadRequest

__all__ = ["compile_conditions"]

_COMPARE = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PG_FTS = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery", "wfts": "websearch_to_tsquery"}


def _field_for(collection: CollectionDef, column: str, field_type: str) -> FieldDef:
    """The field a filter value is checked against (a stand-in for system columns and JSON paths)."""
    found = collection.field(column)
    if found is not None and found.type == field_type:
        return found
    # model_construct: system names are not valid names for user fields.
    kind: Any = SYSTEM_TYPES.get(column, field_type) if found is None else field_type
    return FieldDef.model_construct(name=column, type=kind)


def _value(field: FieldDef, raw: str, dialect: Dialect) -> Any:
    return coerce_filter_value(field, raw, dialect=dialect)


def _like_pattern(raw: str, *, glob: bool) -> str:
    if not glob:
        # PostgREST's `*` is SQL's `%`; a literal % or _ stays a wildcard, as in PostgREST.
        return raw.replace("*", "%")
    out = []
    for ch in raw:
        if ch == "*":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch == "%":
            out.append("*")
        elif ch in "?[]":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


def _bad_value(info: dict[str, Any]) -> BadRequest:
    """``data.invalid_filter_value`` with every placeholder of its message filled."""
    value = info.get("value", "")
    shown = json.dumps(value) if isinstance(value, list) else str(value)
    params = {"field": info.get("column", ""), "value": shown[:200], "expected": info.get("expected", "another value")}
    return BadRequest("data.invalid_filter_value", params=params, details={**info, **params})


def _json_list(raw: str) -> list[Any] | dict[str, Any]:
    """``{a,b}`` (PostgreSQL array syntax) or JSON (``["a"]``, ``{"k": 1}``)."""
    text = raw.strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, list | dict):
            return parsed
    except ValueError:
        pass
    if text.startswith("{") and text.endswith("}"):
        inner = text[1:-1]
        return [part.strip().strip('"') for part in inner.split(",") if part.strip()] if inner else []
    raise _bad_value({"value": raw, "expected": "{a,b} or a JSON array/object"})


class _Compiler:
    def __init__(self, collection: CollectionDef, alias: str, dialect: Dialect, params: Params) -> None:
        self.collection = collection
        self.alias = alias
        self.dialect = dialect
        self.params = params

    def condition(self, cond: Condition) -> str:
        if isinstance(cond, BoolExpr):
            if not cond.items:
                return "TRUE" if cond.op == "and" else "FALSE"
            joined = f" {cond.op.upper()} ".join(f"({self.condition(c)})" for c in cond.items)
            return f"NOT ({joined})" if cond.negate else f"({joined})"
        sql = self.filter(cond)
        return f"NOT ({sql})" if cond.negate else sql

    def filter(self, f: Filter) -> str:
        expr, field_type = path_expr(self.collection, self.alias, f.path, self.dialect, self.params, purpose="filter")
        field = _field_for(self.collection, f.path.column, field_type)
        op = f.op
        if f.modifier in ("any", "all") and isinstance(f.value, tuple):
            joiner = " OR " if f.modifier == "any" else " AND "
            parts = [self.filter(Filter(f.path, op, v)) for v in f.value]
            return "(" + joiner.join(parts) + ")" if parts else ("FALSE" if f.modifier == "any" else "TRUE")
        if op in _COMPARE:
            value = self._scalar(field, f.value)
            if field_type == "json":
                return json_compare(expr, _COMPARE[op], self.params.add(value), self.dialect)
            return f"{expr} {_COMPARE[op]} {self.params.add(value)}"
        if op in ("like", "ilike", "match", "imatch") and field_type not in TEXT_TYPES:
            # The value as the API shows it (2024-01-15T10:00:00.000000Z, true, 2), on both databases.
            expr = text_value(expr, field_type, self.dialect)
        if op in ("like", "ilike"):
            if self.dialect == "postgres":
                pattern = self.params.add(self._conv(f.value, lambda raw: _like_pattern(raw, glob=False)))
                return f"{expr}::text {'ILIKE' if op == 'ilike' else 'LIKE'} {pattern}"
            if op == "ilike":
                pattern = self.params.add(self._conv(f.value, lambda raw: _like_pattern(raw, glob=False)))
                return f"lower({expr}) LIKE lower({pattern})"
            pattern = self.params.add(self._conv(f.value, lambda raw: _like_pattern(raw, glob=True)))
            return f"{expr} GLOB {pattern}"
        if op in ("match", "imatch"):
            if self.dialect == "postgres":
                return f"{expr}::text {'~*' if op == 'imatch' else '~'} {self.params.add(self._conv(f.value, str))}"
            pattern = self._conv(f.value, (lambda raw: f"(?i){raw}") if op == "imatch" else str)
            return f"apprun_regexp({self.params.add(pattern)}, {expr})"
        if op == "in":
            values = f.value if isinstance(f.value, tuple) else (f.value,)
            if not values:
                return "FALSE"
            marks = ", ".join(self.params.add(self._scalar(field, v)) for v in values)
            return f"{expr} IN ({marks})"
        if op == "is":
            raw = self._raw(f.value).lower()
            if raw in ("null", "unknown"):
                return f"{expr} IS NULL"
            if raw == "not_null":
                return f"{expr} IS NOT NULL"
            if raw in ("true", "false"):
                if field_type != "boolean":
                    raise _bad_value({"column": f.path.column, "value": raw})
                if self.dialect == "postgres":
                    return f"{expr} IS {raw.upper()}"
                # IS, not =: NULL IS 1 is false (not NULL), so not.is.true keeps the NULLs, as on PostgreSQL.
                return f"{expr} IS {1 if raw == 'true' else 0}"
            raise _bad_value({"column": f.path.column, "value": raw, "expected": "null, not_null, true, false"})
        if op == "isdistinct":
            value = self._scalar(field, f.value)
            if self.dialect == "postgres":
                return f"{expr} IS DISTINCT FROM {self.params.add(value)}"
            return f"{expr} IS NOT {self.params.add(value)}"
        if op in ("cs", "cd", "ov"):
            return self._containment(expr, field_type, op, self._raw(f.value), f.path.column)
        if op in _PG_FTS:
            found = self._fts(f, expr)
            # A NULL field matches nothing, and not.fts must not match it either (NOT of NULL, as
            # PostgREST's to_tsvector(NULL) gives); the search itself treats NULL as '' so that it
            # can use the index, so the negated form adds the NULL back.
            return f"({found} OR ({expr} IS NULL AND NULL))" if f.negate else found
        raise BadRequest("data.invalid_query", details={"operator": op})

    @staticmethod
    def _raw(value: str | tuple[str, ...] | Hole) -> str:
        if isinstance(value, tuple):
            raise _bad_value({"value": list(value)})
        if isinstance(value, Hole):  # pragma: no cover - holes are only made for ops that convert
            raise BadRequest("data.invalid_query", details={"value": "?"})
        return value

    def _conv(self, value: str | tuple[str, ...] | Hole, convert: Callable[[str], Any]) -> Any:
        """``convert(value)`` now, or, for a value left out of a cached shape, when the statement is bound."""
        if isinstance(value, Hole):
            return Deferred(value.index, convert)
        return convert(self._raw(value))

    def _scalar(self, field: FieldDef, value: str | tuple[str, ...] | Hole) -> Any:
        return self._conv(value, lambda raw: self._scalar_now(field, raw))

    def _scalar_now(self, field: FieldDef, raw: str) -> Any:
        if field.type == "json":  # a JSON value (a whole column or a -> path), compared as JSON
            try:
                json.loads(raw)
            except ValueError:
                # PostgreSQL refuses it as jsonb; SQLite would silently match nothing.
                raise _bad_value(
                    {
                        "column": field.name,
                        "value": raw,
                        "expected": 'JSON (a string is quoted: "text"), or ->> for text',
                    }
                ) from None
            return raw
        return _value(field, raw, self.dialect)

    def _containment(self, expr: str, field_type: str, op: str, raw: str, column: str) -> str:
        if field_type != "json":
            raise _bad_value({"column": column, "operator": op, "value": raw, "expected": "a json field"})
        wanted = _json_list(raw)
        if isinstance(wanted, dict) and op != "cs":  # an object only contains
            raise _bad_value({"column": column, "operator": op, "expected": "an array"})
        if self.dialect == "postgres":
            p = self.params.add(json.dumps(wanted))
            if op == "cs":
                return f"{expr}::jsonb @> {p}::jsonb"
            if op == "cd":
                return f"{expr}::jsonb <@ {p}::jsonb"
            # CASE, not AND: jsonb_array_elements fails on anything but an array, and only CASE
            # is sure to test the type first.
            return (
                f"CASE WHEN jsonb_typeof({expr}::jsonb) = 'array' THEN EXISTS (SELECT 1 FROM "
                f"jsonb_array_elements({expr}::jsonb) a "
                f"WHERE a.value IN (SELECT b.value FROM jsonb_array_elements({p}::jsonb) b)) ELSE FALSE END"
            )
        p = self.params.add(json.dumps(wanted))
        if isinstance(wanted, dict):
            # Only an object contains an object (json_extract on NULL is NULL, which IS a JSON null).
            parts = [f"json_type({expr}) = 'object'"]
            for k in wanted:
                key = self.params.add("$." + json.dumps(k))
                parts.append(f"json_extract({expr}, {key}) IS json_extract({p}, {key})")
            return "(" + " AND ".join(parts) + ")"
        mine = f"(SELECT json_quote(value) FROM json_each({expr}))"
        theirs = f"(SELECT json_quote(value) FROM json_each({p}))"
        # Only an array contains or is contained in an array (json_each of NULL is empty, and of an
        # object its values: either would match where PostgreSQL does not).
        array = f"json_type({expr}) = 'array'"
        if op == "cs":
            return f"({array} AND NOT EXISTS (SELECT 1 FROM json_each({p}) w WHERE json_quote(w.value) NOT IN {mine}))"
        each = f"SELECT 1 FROM json_each({expr}) m WHERE json_quote(m.value)"
        if op == "cd":
            return f"({array} AND NOT EXISTS ({each} NOT IN {theirs}))"
        return f"({array} AND EXISTS ({each} IN {theirs}))"

    def _fts(self, f: Filter, expr: str) -> str:
        field = self.collection.field(f.path.column)
        if field is None or not field.searchable or f.path.json_path:
            raise BadRequest("data.not_searchable", params={"column": f.path.column})
        if self.dialect == "postgres":
            config = f.modifier or "simple"
            if not config.replace("_", "").isalnum():
                raise _bad_value({"config": config})
            func = _PG_FTS[f.op]
            vector = (
                f"to_tsvector('simple', coalesce({expr}, ''))"
                if config == "simple"
                else f"to_tsvector({self.params.add(config)}::regconfig, coalesce({expr}, ''))"
            )
            return (
                f"{vector} @@ {func}({self.params.add(config)}::regconfig, {self.params.add(self._conv(f.value, str))})"
            )
        table = quote(f"{self.collection.name}__fts")
        query = self._conv(f.value, lambda raw: _fts5_query(f.op, raw, f.path.column))
        return f"{self.alias}.rowid IN (SELECT rowid FROM {table} WHERE {table} MATCH {self.params.add(query)})"


def _fts5_query(op: str, raw: str, column: str) -> str:
    """PostgREST's search flavours in FTS5's query language, limited to one column."""
    words = [w for w in raw.replace('"', " ").split() if w]
    if not words:
        return f'{column} : ""'
    if op == "phfts":
        return f'{column} : "' + " ".join(words) + '"'
    if op == "fts":  # to_tsquery syntax: & | ! and parentheses; map the common ones
        tokens = (
            raw.replace("&", " AND ")
            .replace("|", " OR ")
            .replace("!", " NOT ")
            .replace("(", " ( ")
            .replace(")", " ) ")
            .split()
        )
        out = []
        for token in tokens:
            out.append(token if token in ("AND", "OR", "NOT", "(", ")") else '"' + token.replace('"', "") + '"')
        return f"{column} : ({' '.join(out)})"
    if op == "wfts":
        terms = []
        for word in words:
            if word.lower() == "or":
                terms.append("OR")
            elif word.startswith("-") and len(word) > 1:
                terms.append(f'NOT "{word[1:]}"')
            else:
                terms.append(f'"{word}"')
        return f"{column} : ({' '.join(terms)})"
    return f"{column} : (" + " AND ".join(f'"{w}"' for w in words) + ")"


def compile_conditions(
    conditions: tuple[Condition, ...], collection: CollectionDef, alias: str, dialect: Dialect, params: Params
) -> list[str]:
    """One SQL condition per top-level filter (the caller ANDs them)."""
    compiler = _Compiler(collection, alias, dialect, params)
    return [compiler.condition(c) for c in conditions]
