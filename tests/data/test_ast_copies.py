"""The query AST's copy methods keep every field, as ``dataclasses.replace`` would.

They exist because ``replace`` is slow on a read's hot path; a field added to
a class and forgotten in its copy method would be silently dropped from every
cached plan, so each is checked against ``replace`` with every field set.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from apprun.data.query.ast import BoolExpr, EmbedOptions, Filter, ReadQuery


def _every_field_set(cls: type[Any]) -> Any:
    """An instance whose every field holds a distinct object (compared by identity)."""
    return cls(**{f.name: object() for f in fields(cls)})


def test_filter_with_value() -> None:
    f = _every_field_set(Filter)
    new = object()
    assert f.with_value(new) == replace(f, value=new)


def test_boolexpr_with_items() -> None:
    b = _every_field_set(BoolExpr)
    new: Any = object()
    assert b.with_items(new) == replace(b, items=new)


def test_embed_options_with_where() -> None:
    o = _every_field_set(EmbedOptions)
    new: Any = object()
    assert o.with_where(new) == replace(o, where=new)


def test_read_query_with_conditions() -> None:
    q = _every_field_set(ReadQuery)
    where: Any = object()
    embedded: Any = object()
    assert q.with_conditions(where, embedded) == replace(q, where=where, embedded=embedded)
