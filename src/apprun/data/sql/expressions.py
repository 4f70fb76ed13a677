"""SQL building blocks shared by the read and write compilers.

Identifiers are never taken from a request: every name is looked up in the
collection's definition and then quoted; every value is a bound parameter
(``$1``…, rewritten to ``?1`` for SQLite by the database port). Both
databases get expressions that render identical JSON for identical rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from apprun.data.query.ast import CASTS, FieldPath
from apprun.data.schema.model import SYSTEM_COLUMNS, CollectionDef, FieldDef
from apprun.kernel.db.port import Dialect
from apprun.kernel.errors import BadRequest

__all__ = [
    "SYSTEM_TYPES",
    "TEXT_TYPES",
    "Column",
    "Deferred",
    "Hole",
    "Params",
    "cast_expr",
    "column_of",
    "json_compare",
    "json_value",
    "quote",
    "sort_keys",
    "text_value",
]

#: Field types stored as text (schema/ddl.py), which compare and match as their text.
TEXT_TYPES = frozenset({"text", "email", "url", "enum", "uuid", "relation"})
#: The type of each system column, as a field type.
SYSTEM_TYPES = {
    "id": "uuid",
    "tenant_id": "uuid",
    "created_at": "datetime",
    "updated_at": "datetime",
    "created_by": "uuid",
}
_INDEX = re.compile(r"-?[0-9]+")
_PG_DATETIME = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


def quote(identifier: str) -> str:
    """A double-quoted identifier (names are checked against the schema before this)."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Hole:
    """A filter value left out of a query's shape: the ``index``-th value of the request."""

    index: int


@dataclass(frozen=True, slots=True)
class Deferred:
    """A parameter computed from a request's value when a cached statement is bound."""

    index: int
    convert: Callable[[str], Any]

    def bind(self, values: Sequence[str]) -> Any:
        return self.convert(values[self.index])


@dataclass
class Params:
    """Bound parameters, numbered in the order they are added."""

    values: list[Any] = field(default_factory=list)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(frozen=True)
class Column:
    """A resolved column: its SQL reference and the field type it has."""

    name: str
    type: str
    field: FieldDef | None
    sql: str


def column_of(collection: CollectionDef, alias: str, name: str, *, purpose: str) -> Column:
    """The column ``name`` of ``collection`` (hidden fields refused), or 400 with near matches."""
    if name in SYSTEM_COLUMNS:
        return Column(name, SYSTEM_TYPES[name], None, f"{alias}.{quote(name)}")
    found = collection.field(name)
    if found is None or not found.has_column or found.hidden:
        visible = [*SYSTEM_COLUMNS, *(f.name for f in collection.column_fields if not f.hidden)]
        near = get_close_matches(name, visible, n=3)
        raise BadRequest(
            "data.unknown_column",
            params={"column": name, "collection": collection.name, "names": ", ".join(near)},
            details={"column": name, "in": purpose},
            hint="data.did_you_mean" if near else None,
        )
    return Column(name, found.type, found, f"{alias}.{quote(name)}")


def json_path_param(path: tuple[str, ...], dialect: Dialect, params: Params) -> str:
    """The path as one bound parameter: a text[] on PostgreSQL, ``$."a"[0]`` on SQLite."""
    if dialect == "postgres":
        return params.add(list(path)) + "::text[]"
    parts = ["$"]
    for key in path:
        if _INDEX.fullmatch(key):
            parts.append(f"[#{key}]" if key.startswith("-") else f"[{key}]")
        else:
            parts.append('."' + key.replace('"', '""') + '"')
    return params.add("".join(parts))


def path_expr(
    collection: CollectionDef, alias: str, path: FieldPath, dialect: Dialect, params: Params, *, purpose: str
) -> tuple[str, str]:
    """(SQL, field type) of a column or a JSON path into one, for filters and ordering.

    A ``->>`` path is text; a ``->`` path is JSON (compared as its text).
    """
    column = column_of(collection, alias, path.column, purpose=purpose)
    if not path.json_path:
        return column.sql, column.type
    if column.type != "json":
        raise BadRequest("data.not_json", params={"column": path.column})
    p = json_path_param(path.json_path, dialect, params)
    if dialect == "postgres":
        return f"({column.sql} {'#>>' if path.json_text else '#>'} {p})", "text" if path.json_text else "json"
    if path.json_text:
        # SQLite's ->> gives a JSON number as a number and true as 1; PostgreSQL's #>> gives text
        # for every scalar (and JSON text for objects and arrays). So: strings as ->> reads them,
        # JSON null as NULL, everything else as its JSON text (|| '' drops the JSON subtype that
        # would make json_object() embed it as JSON), as PostgreSQL does.
        return (
            f"(CASE json_type({column.sql}, {p}) WHEN 'text' THEN {column.sql} ->> {p} "
            f"WHEN 'null' THEN NULL ELSE ({column.sql} -> {p}) || '' END)"
        ), "text"
    return f"({column.sql} -> {p})", "json"


def _sqlite_json_rank(sql: str) -> str:
    """jsonb's order of types (null < string < number < boolean < array < object) for a JSON text."""
    return (
        f"(CASE json_type({sql}) WHEN 'null' THEN 0 WHEN 'text' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 "
        f"WHEN 'false' THEN 3 WHEN 'true' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END)"
    )


def sort_keys(sql: str, field_type: str, dialect: Dialect) -> list[str]:
    """What to ORDER BY for a value: a JSON value on SQLite sorts as jsonb does, not as its text.

    PostgreSQL orders ``jsonb`` by type, then numbers numerically; SQLite's ``->`` is text
    (``"10"`` before ``"9"``). The type's rank, then the SQL value of the JSON, give jsonb's
    order for scalars.
    """
    if dialect == "postgres" or field_type != "json":
        return [sql]
    return [_sqlite_json_rank(sql), f"json_extract({sql}, '$')"]


def json_compare(sql: str, op: str, param: str, dialect: Dialect) -> str:
    """``json <op> $n`` for a JSON value and a JSON text parameter, with jsonb's semantics on SQLite."""
    if dialect == "postgres":
        return f"{sql} {op} {param}"
    # JSON null has no SQL value: its rank alone decides (coalesce, or null = null would be NULL).
    mine = f"({_sqlite_json_rank(sql)}, coalesce(json_extract({sql}, '$'), 0))"
    theirs = f"({_sqlite_json_rank(param)}, coalesce(json_extract({param}, '$'), 0))"
    return f"{mine} {op} {theirs}"


def _sqlite_number_text(sql: str) -> str:
    """A REAL as the shortest text that reads back as the same double, as PostgreSQL prints a float8.

    SQLite's own rendering (``CAST``, ``json_object``) keeps 15 significant digits, which changes
    some values (2.0833333333333335 becomes 2.08333333333333), and writes 2.0 where PostgreSQL
    writes 2.
    """
    return (
        f"(CASE WHEN {sql} IS NULL THEN NULL "
        f"WHEN CAST(printf('%.15g', {sql}) AS REAL) = {sql} THEN printf('%.15g', {sql}) "
        f"WHEN CAST(printf('%.16g', {sql}) AS REAL) = {sql} THEN printf('%.16g', {sql}) "
        f"ELSE printf('%!.17g', {sql}) END)"
    )


def json_value(sql: str, field_type: str, dialect: Dialect) -> str:
    """An expression that renders a column of ``field_type`` as the same JSON on both databases."""
    if dialect == "postgres":
        if field_type == "datetime":
            return f"to_char({sql} AT TIME ZONE 'UTC', {_PG_DATETIME})"
        if field_type == "date":
            return f"to_char({sql}, 'YYYY-MM-DD')"
        return sql
    if field_type == "boolean":
        return f"(CASE WHEN {sql} IS NULL THEN NULL WHEN {sql} THEN json('true') ELSE json('false') END)"
    if field_type in ("json", "number"):
        return f"json({_sqlite_number_text(sql) if field_type == 'number' else sql})"
    return sql


def text_value(sql: str, field_type: str, dialect: Dialect) -> str:
    """A value as text, the same on both databases (for casts to text and for like/match)."""
    if field_type == "datetime":
        return json_value(sql, field_type, dialect) if dialect == "postgres" else sql
    if dialect == "postgres":
        return f"to_char({sql}, 'YYYY-MM-DD')" if field_type == "date" else f"({sql})::text"
    if field_type == "boolean":
        return f"(CASE WHEN {sql} IS NULL THEN NULL WHEN {sql} THEN 'true' ELSE 'false' END)"
    if field_type == "json":  # || drops the JSON subtype of ->, which would embed it as JSON
        return f"({sql} || '')"
    return _sqlite_number_text(sql) if field_type == "number" else f"CAST({sql} AS TEXT)"


_CAST_RESULT = {
    "text": "text", "integer": "integer", "int": "integer", "bigint": "integer",
    "numeric": "number", "float": "number", "double": "number",
    "boolean": "boolean", "bool": "boolean", "date": "date", "json": "json",
}  # fmt: skip
#: Source types each result type can be cast from: PostgreSQL has no cast from a date to a
#: number, from a number to a boolean, and so on; refusing those is a 400 on both databases
#: rather than a database error on one.
_CASTABLE = {
    "integer": frozenset({"text", "integer", "number", "boolean", "json"}),
    "number": frozenset({"text", "integer", "number", "boolean", "json"}),
    "boolean": frozenset({"text", "integer", "boolean", "json"}),
    "date": frozenset({"text", "datetime", "date"}),
}
#: (result, source) → SQL with ``{x}`` for the value; ``(result, "")`` for any other source.
_PG_CASTS = {
    ("integer", "boolean"): "({x})::int::bigint",
    ("integer", ""): "({x})::bigint",
    ("number", "boolean"): "({x})::int::double precision",
    ("number", ""): "({x})::double precision",
    ("boolean", "integer"): "(({x}) <> 0)",
    ("boolean", ""): "({x})::boolean",
    ("date", "datetime"): "(({x}) AT TIME ZONE 'UTC')::date",
    ("date", ""): "({x})::date",
}
_SQLITE_CASTS = {
    # Round half to even, as PostgreSQL turns a float8 into a bigint.
    ("integer", "number"): (
        "CAST(CASE WHEN abs({x} - CAST({x} AS INTEGER)) = 0.5 THEN 2 * round({x} / 2.0) ELSE round({x}) END AS INTEGER)"
    ),
    # A JSON number rounds half away from zero, as PostgreSQL's numeric.
    ("integer", "json"): "CAST(round(CAST({x} AS REAL)) AS INTEGER)",
    ("integer", ""): "CAST({x} AS INTEGER)",
    ("number", ""): "CAST({x} AS REAL)",
    ("boolean", "integer"): "(({x}) <> 0)",
    ("boolean", "json"): "(CASE {x} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)",
    # PostgreSQL's spellings of a boolean; it refuses any other text.
    ("boolean", "text"): (
        "(CASE lower(trim({x})) WHEN 'true' THEN 1 WHEN 't' THEN 1 WHEN 'yes' THEN 1 WHEN 'y' THEN 1 "
        "WHEN 'on' THEN 1 WHEN '1' THEN 1 WHEN 'false' THEN 0 WHEN 'f' THEN 0 WHEN 'no' THEN 0 "
        "WHEN 'n' THEN 0 WHEN 'off' THEN 0 WHEN '0' THEN 0 END)"
    ),
    ("boolean", ""): "{x}",
    ("date", "datetime"): "substr({x}, 1, 10)",
    ("date", ""): "date({x})",
}


def cast_expr(sql: str, cast: str, dialect: Dialect, source: str = "text") -> tuple[str, str]:
    """``col::cast`` → (SQL, resulting field type); ``source`` is the field type of ``sql``.

    Both databases give the same value for the same cast: a float rounds half to even into an
    integer (PostgreSQL's float8 to bigint), a datetime becomes its UTC text or UTC date, a
    boolean becomes 1/0 or ``true``/``false``, a number its shortest text.
    """
    if cast not in CASTS:
        raise BadRequest("data.invalid_cast", params={"cast": cast})
    result = _CAST_RESULT[cast]
    kind = "text" if source in TEXT_TYPES else source
    if kind not in _CASTABLE.get(result, frozenset({kind})):
        raise BadRequest("data.invalid_cast", params={"cast": cast}, details={"cast": cast, "from": source})
    if result == "json":
        rendered = json_value(sql, kind, dialect)
        return (f"to_jsonb({rendered})" if dialect == "postgres" else f"json_quote({rendered})"), result
    if result == "text":
        return text_value(sql, kind, dialect), result
    templates = _PG_CASTS if dialect == "postgres" else _SQLITE_CASTS
    template = templates.get((result, kind)) or templates[(result, "")]
    return template.replace("{x}", sql), result
