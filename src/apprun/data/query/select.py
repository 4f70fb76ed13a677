"""``select=`` of the PostgREST query grammar: columns, JSON paths, casts, aggregates and embeds.

See `apprun.data.query.grammar` for the grammar and the decisions taken where
PostgREST is loose; names, JSON paths and casts are read by `apprun.data.query.lexer`.
"""

from __future__ import annotations

from apprun.data.query.ast import AGGREGATES, Embed, FieldPath, SelectField, SelectItem, Star
from apprun.data.query.lexer import (
    DEFAULT_MAX_DEPTH,
    WORD,
    Cursor,
    check_depth,
    check_text,
    is_ident_char,
    read_cast,
    read_json_path,
    read_name,
)

__all__ = ["parse_select"]


def parse_select(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, parameter: str = "select") -> tuple[SelectItem, ...]:
    """``select=``: columns, JSON paths, casts, aggregates and embeds (empty text: nothing)."""
    check_depth(max_depth)
    check_text(text, parameter, "value")
    return _select_list(Cursor(text, parameter), 0, max_depth, nested=False)


def _select_list(cur: Cursor, depth: int, max_depth: int, *, nested: bool) -> tuple[SelectItem, ...]:
    cur.skip_ws()
    if (nested and cur.peek() == ")") or (not nested and cur.eof()):
        if nested:
            cur.pos += 1
        return ()
    items: list[SelectItem] = []
    while True:
        items.append(_select_item(cur, depth, max_depth))
        cur.skip_ws()
        if cur.peek() != ",":
            break
        cur.pos += 1
        cur.skip_ws()
        if cur.eof() or cur.peek() in ",)":
            cur.fail("a column, * or an embed after ','", hint="remove the extra ','")
    if nested:
        if cur.peek() != ")":
            cur.fail("',' or ')'", hint="every '(' of an embed needs its ')'")
        cur.pos += 1
    elif not cur.eof():
        cur.fail("',' or the end of select", hint="unbalanced ')'" if cur.peek() == ")" else None)
    return tuple(items)


def _end_of_item(cur: Cursor) -> None:
    cur.skip_ws()
    if not (cur.eof() or cur.peek() in ",)"):
        hint = None
        if cur.peek() == "(":
            hint = "an embed is relation(columns); a column with a JSON path or a cast cannot be embedded"
        elif cur.peek() == ":":
            hint = "an alias is alias:column and a cast is column::type"
        cur.fail("',' or ')' after the select item", hint=hint)


def _select_item(cur: Cursor, depth: int, max_depth: int) -> SelectItem:
    cur.skip_ws()
    if cur.startswith("..."):
        at = cur.pos
        cur.pos += 3
        relation = read_name(cur, "the name of the embed to spread")
        return _embed(cur, relation, None, depth, max_depth, at=at, spread=True)
    if cur.peek() == "*":
        cur.pos += 1
        _end_of_item(cur)
        return Star()
    alias = _alias(cur)
    if cur.startswith("...") or cur.peek() == "*":
        cur.fail("a column or an embed after the alias", hint="* and spread embeds (...rel) take no alias")
    at = cur.pos
    quoted = cur.peek() == '"'
    name = read_name(cur, "a column, * or an embed")
    if name == "count" and not quoted and cur.startswith("()"):
        cur.pos += 2
        cur.skip_ws()
        cast = read_cast(cur)
        _end_of_item(cur)
        return SelectField(None, alias=alias, cast=cast, aggregate="count")
    if cur.peek() in ("!", "("):
        if name == "count" and not quoted:
            cur.fail("count() with nothing inside", hint="count() counts rows; col.count() counts a column's values")
        return _embed(cur, name, alias, depth, max_depth, at=at, spread=False)
    keys, as_text = read_json_path(cur)
    path = FieldPath(name, keys, as_text)
    cur.skip_ws()
    first_cast = read_cast(cur)
    if cur.peek() != ".":
        _end_of_item(cur)
        return SelectField(path, alias=alias, cast=first_cast)
    cur.pos += 1
    word = WORD.match(cur.text, cur.pos)
    aggregate = word.group() if word else ""
    if aggregate not in AGGREGATES or not cur.text.startswith("()", cur.pos + len(aggregate)):
        cur.fail(
            "an aggregate: avg(), count(), max(), min() or sum()",
            hint="select lists columns; an embedded resource's columns go inside rel(...)",
        )
    cur.pos += len(aggregate) + 2
    cur.skip_ws()
    result_cast = read_cast(cur)
    _end_of_item(cur)
    return SelectField(path, alias=alias, cast=result_cast, aggregate=aggregate, input_cast=first_cast)


def _alias(cur: Cursor) -> str | None:
    """``alias:`` if the item starts with one (cursor after it), else None (cursor unmoved)."""
    start = cur.pos
    if not (cur.peek() == '"' or is_ident_char(cur.peek())):
        return None
    name = read_name(cur, "a column, * or an embed")
    cur.skip_ws()
    if cur.peek() == ":" and cur.peek(1) != ":":
        cur.pos += 1
        cur.skip_ws()
        return name
    cur.pos = start
    return None


def _embed(
    cur: Cursor, relation: str, alias: str | None, depth: int, max_depth: int, *, at: int, spread: bool
) -> Embed:
    hint: str | None = None
    join: str | None = None
    while cur.peek() == "!":
        bang = cur.pos
        cur.pos += 1
        quoted = cur.peek() == '"'
        word = read_name(cur, "a foreign key hint, inner or left after '!'")
        if not quoted and word in ("inner", "left"):
            if join is not None:
                cur.fail("one join type (!inner or !left)", at=bang)
            join = word
        else:
            if hint is not None:
                cur.fail("one hint", at=bang, hint="an embed takes at most one hint and one join type: rel!fk!inner")
            hint = word
    cur.skip_ws()
    if cur.peek() != "(":
        cur.fail("'(' and the embed's columns", hint="an embed is relation(columns), e.g. author(name)")
    key = alias or relation
    if "." in key:
        cur.fail(
            "an embed name without '.'", at=at, hint="embedded filters are written embed.column, so a dot is refused"
        )
    if depth + 1 > max_depth:
        cur.fail(f"at most {max_depth} levels of embedding", hint="flatten the request or make several")
    cur.pos += 1
    select = _select_list(cur, depth + 1, max_depth, nested=True)
    return Embed(relation, select, alias=alias, hint=hint, inner=join == "inner", spread=spread)
