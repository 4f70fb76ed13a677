"""The parsed form of a PostgREST-style request: what the grammar produces
and the SQL compiler consumes.

Everything here is plain data, still untyped against any collection: the
parser knows the grammar, not the schema. The compiler checks every name
against the collection (unknown or hidden names are refused there) and turns
every value into a bound parameter of the field's type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AGGREGATES",
    "CASTS",
    "FILTER_OPS",
    "BoolExpr",
    "Condition",
    "Embed",
    "EmbedOptions",
    "FieldPath",
    "Filter",
    "OrderItem",
    "ReadQuery",
    "SelectField",
    "SelectItem",
    "Star",
]

#: Operators of horizontal filters (PostgREST's names).
FILTER_OPS = frozenset(
    {
        "eq", "neq", "gt", "gte", "lt", "lte",
        "like", "ilike", "match", "imatch",
        "in", "is", "isdistinct",
        "cs", "cd", "ov",
        "fts", "plfts", "phfts", "wfts",
    }
)  # fmt: skip
AGGREGATES = frozenset({"count", "sum", "avg", "min", "max"})
#: Casts a client may ask for in `select` (``col::text``).
CASTS = frozenset({"text", "integer", "int", "bigint", "numeric", "float", "double", "boolean", "bool", "date", "json"})


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A column, optionally followed by a JSON path: ``data->a->>b``."""

    column: str
    #: Keys (or array indexes, as digit strings) after the column.
    json_path: tuple[str, ...] = ()
    #: True when the last arrow was ``->>`` (text), False for ``->`` (JSON).
    json_text: bool = False

    def label(self) -> str:
        """The key PostgREST gives the value in the reply (the last path key, else the column)."""
        return self.json_path[-1] if self.json_path else self.column


@dataclass(frozen=True, slots=True)
class Star:
    """``*``: every visible field."""


@dataclass(frozen=True, slots=True)
class SelectField:
    """``alias:column->path::cast`` or ``alias:column::input_cast.aggregate()::cast``.

    ``path`` is None only for a bare ``count()``. ``cast`` is the outermost
    cast: the column's without an aggregate, the aggregate's result with one.
    ``input_cast`` is only set with an aggregate: the column is cast before it
    is aggregated (PostgREST's ``data->amount::numeric.sum()``).
    """

    path: FieldPath | None
    alias: str | None = None
    cast: str | None = None
    aggregate: str | None = None
    input_cast: str | None = None


@dataclass(frozen=True, slots=True)
class Embed:
    """A related collection embedded in each row: ``alias:relation!hint(select)``.

    ``relation`` is a collection name or a relation field name; ``hint``
    disambiguates (a field or join-collection name); ``inner`` comes from
    ``!inner`` (rows without a match are dropped), ``spread`` from ``...``.
    """

    relation: str
    select: tuple[SelectItem, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False
    spread: bool = False

    @property
    def key(self) -> str:
        """How the embed is named in the reply and in ``rel.filter`` parameters."""
        return self.alias or self.relation


SelectItem = Star | SelectField | Embed


@dataclass(frozen=True, slots=True)
class Filter:
    """``column=[not.]op[(modifier)].value``."""

    path: FieldPath
    op: str
    #: The raw value: a string, or a tuple for ``in`` (and ``any``/``all`` forms).
    value: str | tuple[str, ...]
    negate: bool = False
    #: ``fts(english)`` → ``english``; ``eq(any)`` → ``any``.
    modifier: str | None = None

    def with_value(self, value: Any) -> Filter:
        """This filter with another value (``dataclasses.replace`` is slow on a read's hot path)."""
        return Filter(self.path, self.op, value, self.negate, self.modifier)


@dataclass(frozen=True, slots=True)
class BoolExpr:
    """``or=(…)`` / ``and=(…)``, nested, with optional ``not.``."""

    op: Literal["and", "or"]
    items: tuple[Condition, ...]
    negate: bool = False

    def with_items(self, items: tuple[Condition, ...]) -> BoolExpr:
        return BoolExpr(self.op, items, self.negate)


Condition = Filter | BoolExpr


@dataclass(frozen=True, slots=True)
class OrderItem:
    path: FieldPath
    desc: bool = False
    #: None: the database's default for the direction.
    nulls: Literal["first", "last"] | None = None


@dataclass(frozen=True, slots=True)
class EmbedOptions:
    """Filters and paging that apply inside one embedded relation (``comments.order=…``)."""

    where: tuple[Condition, ...] = ()
    order: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None

    def with_where(self, where: tuple[Condition, ...]) -> EmbedOptions:
        return EmbedOptions(where, self.order, self.limit, self.offset)


@dataclass(frozen=True)
class ReadQuery:
    select: tuple[SelectItem, ...] = (Star(),)
    #: Top-level conditions, ANDed.
    where: tuple[Condition, ...] = ()
    order: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    #: Options per embed, keyed by the dotted embed path (``"comments"``, ``"comments.author"``).
    embedded: dict[str, EmbedOptions] = field(default_factory=dict)
    #: ``on_conflict=a,b`` (upserts), ``columns=a,b`` (inserts).
    on_conflict: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    def with_conditions(self, where: tuple[Condition, ...], embedded: dict[str, EmbedOptions]) -> ReadQuery:
        """This query with other top-level conditions and embed options (every other field kept)."""
        return ReadQuery(
            self.select, where, self.order, self.limit, self.offset, embedded, self.on_conflict, self.columns
        )
