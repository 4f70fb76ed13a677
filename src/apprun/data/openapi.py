"""OpenAPI for collections: each one's endpoints and row schemas, rebuilt when the catalog changes."""

from __future__ import annotations

import copy
from typing import Any

from apprun.data.query.ast import FILTER_OPS
from apprun.data.schema.catalog import Catalog
from apprun.data.schema.model import CollectionDef, FieldDef

__all__ = ["CollectionsOpenApi"]

_SYSTEM = {
    "id": {"type": "string", "format": "uuid", "readOnly": True},
    "tenant_id": {"type": ["string", "null"], "format": "uuid", "readOnly": True},
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
    "created_by": {"type": ["string", "null"], "format": "uuid", "readOnly": True},
}


def field_schema(f: FieldDef) -> dict[str, Any]:
    t = f.type
    schema: dict[str, Any]
    if t == "integer":
        schema = {"type": "integer", "format": "int64"}
    elif t == "number":
        schema = {"type": "number"}
    elif t == "boolean":
        schema = {"type": "boolean"}
    elif t == "datetime":
        schema = {"type": "string", "format": "date-time"}
    elif t == "date":
        schema = {"type": "string", "format": "date"}
    elif t == "json":
        schema = {}
    elif t in ("uuid", "relation"):
        schema = {"type": "string", "format": "uuid"}
    elif t == "email":
        schema = {"type": "string", "format": "email"}
    elif t == "url":
        schema = {"type": "string", "format": "uri"}
    elif t == "enum":
        schema = {"type": "string", "enum": list(f.values or [])}
    else:
        schema = {"type": "string"}
    if f.min is not None:
        schema["minimum"] = f.min
    if f.max is not None:
        schema["maximum"] = f.max
    if f.min_length is not None:
        schema["minLength"] = f.min_length
    if f.max_length is not None:
        schema["maxLength"] = f.max_length
    if f.pattern:
        schema["pattern"] = f.pattern
    if f.default is not None:
        schema["default"] = f.default if not hasattr(f.default, "isoformat") else f.default.isoformat()
    if f.type == "relation":
        schema["description"] = f"id of a row of {f.collection}"
    if not f.required and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _row_schemas(c: CollectionDef) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = list(c.column_fields)
    read = {
        "type": "object",
        "description": c.description or f"A row of {c.name}",
        "properties": {**copy.deepcopy(_SYSTEM), **{f.name: field_schema(f) for f in fields if not f.hidden}},
    }
    writable = [f for f in fields if f.name != c.owner_field]
    write = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: field_schema(f) for f in writable},
        "required": [f.name for f in writable if f.required and f.default is None],
    }
    return read, write


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, where: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema or {"type": "string"}, "description": description}


def _params(c: CollectionDef) -> list[dict[str, Any]]:
    integer = {"type": "integer", "minimum": 0}
    common = [
        _param("select", "query", "columns, renames, casts, embeds: `id,title,author(name)`"),
        _param("order", "query", "`col.asc|desc[.nullsfirst|nullslast]`, comma-separated"),
        _param("limit", "query", "rows at most (clamped to the maximum page size)", integer),
        _param("offset", "query", "rows to skip", integer),
        _param("or", "query", "`(a.eq.1,b.gt.2)`; also `and`, `not.or`, `not.and`"),
        _param("Range", "header", "`0-9` (items)"),
        _param("Prefer", "header", "`count=exact|planned|estimated`, `return=…`, `resolution=…`"),
    ]
    ops = ", ".join(sorted(FILTER_OPS))
    names = ["id", "created_at", "updated_at", "created_by", *(f.name for f in c.column_fields if not f.hidden)]
    return common + [_param(n, "query", f"`[not.]op.value`; op: {ops}") for n in names]


def _op(c: CollectionDef, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    errors = {"4XX": {"description": "error: {code, message, details, hint, request_id}"}}
    return {"tags": [f"data: {c.name}"], "summary": summary, **extra, "responses": {**responses, **errors}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def collection_paths(c: CollectionDef) -> dict[str, Any]:
    write = _ref(f"{c.name}.write")
    rows = {
        "description": "the rows",
        "content": {"application/json": {"schema": {"type": "array", "items": _ref(c.name)}}},
    }
    one = {"description": "the row", "content": {"application/json": {"schema": _ref(c.name)}}}
    done = {"description": "done"}
    params = _params(c)
    by_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]
    insert_body = _body({"oneOf": [write, {"type": "array", "items": write}]})
    listing = {
        "get": _op(c, f"Read {c.name}", {"200": rows, "206": rows}, parameters=params),
        "post": _op(c, f"Insert into {c.name} (an object or an array)", {"201": rows}, requestBody=insert_body),
        "patch": _op(c, f"Update the {c.name} rows the filters select", {"200": rows, "204": done},
                     parameters=params, requestBody=_body(write)),
        "delete": _op(c, f"Delete the {c.name} rows the filters select", {"200": rows, "204": done}, parameters=params),
    }  # fmt: skip
    record = {
        "get": _op(c, f"One {c.name} row", {"200": one}, parameters=by_id),
        "patch": _op(c, f"Change one {c.name} row", {"200": one}, parameters=by_id, requestBody=_body(write)),
        "put": _op(c, f"Replace or create one {c.name} row", {"200": one, "201": one},
                   parameters=by_id, requestBody=_body(write)),
        "delete": _op(c, f"Delete one {c.name} row", {"204": done}, parameters=by_id),
    }  # fmt: skip
    return {f"/data/{c.name}": listing, f"/data/{c.name}/{{id}}": record}


class CollectionsOpenApi:
    """Adds every collection to an OpenAPI document; rebuilt only when the catalog's version moves."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._version = -2
        self._paths: dict[str, Any] = {}
        self._schemas: dict[str, Any] = {}

    async def __call__(self, document: dict[str, Any]) -> dict[str, Any]:
        collections = await self.catalog.all()
        if self.catalog.version != self._version:
            paths: dict[str, Any] = {}
            schemas: dict[str, Any] = {}
            for c in sorted(collections.values(), key=lambda c: c.name):
                paths.update(collection_paths(c))
                read, write = _row_schemas(c)
                schemas[c.name] = read
                schemas[f"{c.name}.write"] = write
            self._paths, self._schemas, self._version = paths, schemas, self.catalog.version
        out = dict(document)
        out["paths"] = {**document.get("paths", {}), **self._paths}
        components = dict(document.get("components", {}))
        components["schemas"] = {**components.get("schemas", {}), **self._schemas}
        out["components"] = components
        return out
