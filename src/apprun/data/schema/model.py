"""Collections: what an application's table looks like, as data.

A collection definition (JSON over the API, YAML for ``apprun collections
apply``) names its fields with their types and constraints, its indexes, its
scope and its access rules::

    name: posts
    scope: tenant                # rows carry tenant_id (default); or: global
    fields:
      - {name: title, type: text, required: true, max_length: 200, searchable: true}
      - {name: status, type: enum, values: [draft, published], default: draft}
      - {name: author, type: relation, collection: authors, on_delete: set_null}
      - {name: tags, type: relation, collection: tags, many: true, through: post_tags}
      - {name: views, type: integer, min: 0, default: 0}
    indexes:
      - {fields: [status, created_at]}
    rules: {list: public, view: public, create: authenticated, update: owner, delete: rbac}

Every row also has the system columns ``id`` (a UUIDv7), ``tenant_id``,
``created_at``, ``updated_at`` and ``created_by``, which clients never set.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "COLUMN_TYPES",
    "RESERVED_NAMES",
    "SYSTEM_COLUMNS",
    "CollectionDef",
    "FieldDef",
    "FieldType",
    "IndexDef",
    "Rule",
    "Rules",
    "valid_identifier",
]

FieldType = Literal[
    "text", "integer", "number", "boolean", "datetime", "date", "json", "uuid", "email", "url", "enum", "relation"
]
Rule = Literal["public", "authenticated", "owner", "rbac", "nobody"]
ACTIONS = ("list", "view", "create", "update", "delete")

#: Columns every collection has; clients read them and never write them.
SYSTEM_COLUMNS = ("id", "tenant_id", "created_at", "updated_at", "created_by")
RESERVED_NAMES = frozenset(
    {*SYSTEM_COLUMNS, "select", "order", "limit", "offset", "or", "and", "not", "on_conflict", "columns"}
)
#: Types stored as text (and searchable).
TEXTUAL = frozenset({"text", "email", "url", "enum", "uuid"})
#: Field types with a column of their own (a many-to-many relation has none).
COLUMN_TYPES = frozenset(
    {"text", "integer", "number", "boolean", "datetime", "date", "json", "uuid", "email", "url", "enum", "relation"}
)

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED_PREFIXES = ("apprun_", "pg_", "sqlite_")


def valid_identifier(name: str) -> bool:
    return bool(_IDENT.match(name))


class FieldDef(BaseModel):
    """One field of a collection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: FieldType
    required: bool = False
    unique: bool = False
    default: Any = None
    #: Numbers: the smallest and largest value allowed.
    min: int | float | None = None
    max: int | float | None = None
    #: Text: the shortest and longest length allowed.
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    #: Text: a regular expression the whole value must match.
    pattern: str | None = None
    #: Enums: the allowed values.
    values: list[str] | None = None
    #: Relations: the target collection, and what deleting a target does.
    collection: str | None = None
    on_delete: Literal["cascade", "set_null", "restrict"] = "restrict"
    #: Many-to-many: no column; rows are linked through the join collection ``through``.
    many: bool = False
    through: str | None = None
    #: Text: full-text searchable with the ``fts`` filters.
    searchable: bool = False
    #: Never returned, never filtered or ordered on (secrets, internal notes).
    hidden: bool = False
    #: Migration hint: this field used to be called so (a rename keeps the data).
    renamed_from: str | None = None

    @field_validator("name", "renamed_from")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not valid_identifier(value) or value in RESERVED_NAMES):
            raise ValueError(f"{value!r} is not a usable field name (lower case, digits, _; not a system name)")
        return value

    @field_validator("through", "collection")
    @classmethod
    def _collection_ref(cls, value: str | None) -> str | None:
        if value is not None and not valid_identifier(value):
            raise ValueError(f"{value!r} is not a collection name (lower case, digits, _)")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldDef:
        t = self.type
        if t == "enum" and not self.values:
            raise ValueError(f"enum field {self.name!r} needs values")
        if t != "enum" and self.values is not None:
            raise ValueError(f"only enum fields have values ({self.name!r})")
        if t == "relation" and not self.collection:
            raise ValueError(f"relation field {self.name!r} needs a collection")
        if t != "relation" and (self.collection or self.many or self.through):
            raise ValueError(f"only relation fields have collection/many/through ({self.name!r})")
        if self.many and not self.through:
            raise ValueError(f"many-to-many field {self.name!r} needs through (the join collection)")
        if self.many and (self.unique or self.required or self.default is not None):
            raise ValueError(f"many-to-many field {self.name!r} has no column: no unique/required/default")
        if self.searchable and t not in TEXTUAL:
            raise ValueError(f"only text fields can be searchable ({self.name!r})")
        if (self.min is not None or self.max is not None) and t not in ("integer", "number"):
            raise ValueError(f"min/max are for numbers ({self.name!r})")
        if (self.min_length is not None or self.max_length is not None or self.pattern) and t not in TEXTUAL:
            raise ValueError(f"length and pattern are for text ({self.name!r})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min is above max ({self.name!r})")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"min_length is above max_length ({self.name!r})")
        if self.on_delete == "set_null" and self.required:
            raise ValueError(f"a required relation cannot be set to null on delete ({self.name!r})")
        return self

    @property
    def has_column(self) -> bool:
        return not self.many


class IndexDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] = Field(min_length=1)
    unique: bool = False


class Rules(BaseModel):
    """Who may do what. ``rbac`` asks the tenant's policies (``collection:<name>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list: Rule = "rbac"
    view: Rule = "rbac"
    create: Rule = "rbac"
    update: Rule = "rbac"
    delete: Rule = "rbac"


class CollectionDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    scope: Literal["tenant", "global"] = "tenant"
    fields: list[FieldDef] = Field(default_factory=list)
    indexes: list[IndexDef] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)
    #: The field naming the user who owns a row (for ``owner`` rules); default ``created_by``.
    owner_field: str | None = None

    @field_validator("name")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not valid_identifier(value) or value.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"{value!r} is not a usable collection name (lower case, digits, _; no apprun_ prefix)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CollectionDef:
        names = [f.name for f in self.fields]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate field names: {sorted(duplicates)}")
        columns = {*SYSTEM_COLUMNS, *(f.name for f in self.fields if f.has_column)}
        for index in self.indexes:
            unknown = [f for f in index.fields if f not in columns]
            if unknown:
                raise ValueError(f"index on unknown fields: {unknown}")
        if self.owner_field is not None:
            owner = next((f for f in self.fields if f.name == self.owner_field), None)
            if owner is None or owner.type not in ("uuid", "text"):
                raise ValueError("owner_field must name a uuid or text field (it holds a user id)")
        return self

    def field(self, name: str) -> FieldDef | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def owner_column(self) -> str:
        return self.owner_field or "created_by"

    @property
    def column_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if f.has_column]
