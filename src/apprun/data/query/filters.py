"""Filters of the PostgREST query grammar: ``column=[not.]op[(modifier)].value`` and ``and``/``or`` trees.

See `apprun.data.query.grammar` for the grammar and the decisions taken where
PostgREST is loose (``in`` lists, ``any``/``all`` arrays, values inside
``and``/``or``); column names and JSON paths are read by `apprun.data.query.lexer`.
"""

from __future__ import annotations

import re
from typing import NoReturn

from apprun.data.query.ast import FILTER_OPS, BoolExpr, Condition, FieldPath, Filter
from apprun.data.query.lexer import (
    DEFAULT_MAX_DEPTH,
    WORD,
    WS,
    Cursor,
    check_depth,
    check_text,
    is_ident_char,
    read_field,
    try_quoted,
)

__all__ = ["parse_filter", "parse_logic"]

_QUANTIFIABLE = frozenset({"eq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
_FTS = frozenset({"fts", "plfts", "phfts", "wfts"})
_RANGE_OPS = frozenset({"sl", "sr", "nxl", "nxr", "adj"})
_IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
_GROUP = re.compile(r"(not\.)?(and|or)[ \t]*\(")
_MODIFIER = re.compile(r"\((any|all)\)")
#: PostgREST's array value inside and/or: no nested braces, so scanning stays linear.
_PG_ARRAY = re.compile(r"\{[^{}]*\}")

_OPERATORS_HINT = "operators: " + ", ".join(sorted(FILTER_OPS)) + "; negate with not. (not.eq.5)"
_QUOTE_HINT = 'a value containing "," or ")" must be double-quoted, e.g. name.eq."Smith, J."'


# --- filters ------------------------------------------------------------------------


def parse_filter(column_part: str, value: str) -> Filter:
    """``column[->path]=[not.]op[(modifier)].value`` (the column without an embed path)."""
    check_text(column_part, column_part, "name")
    check_text(value, column_part, "value")
    key = Cursor(column_part, column_part, "name")
    path = read_field(key)
    if not key.eof():
        hint = "embedded filters (embed.column) are read by parse_read" if key.peek() == "." else None
        key.fail("the end of the column name", hint=hint)
    return op_expr(Cursor(value, column_part), path, in_logic=False)


def op_expr(cur: Cursor, path: FieldPath, *, in_logic: bool) -> Filter:
    negate = cur.startswith("not.")
    if negate:
        cur.pos += 4
    at = cur.pos
    word = WORD.match(cur.text, cur.pos)
    op = word.group() if word else ""
    if op not in FILTER_OPS:
        hint = f"{op} (a range operator) is not supported" if op in _RANGE_OPS else _OPERATORS_HINT
        cur.fail("an operator such as eq, in or is", at=at, hint=hint)
    cur.pos += len(op)
    modifier = _modifier(cur, op) if cur.peek() == "(" else None
    if cur.peek() != ".":
        cur.fail("'.' and a value after the operator", hint="a filter is operator.value, e.g. eq.5 or in.(1,2)")
    cur.pos += 1
    value_at = cur.pos
    value: str | tuple[str, ...]
    if op == "in":
        value = _list(cur)
    elif op == "is":
        word = WORD.match(cur.text, cur.pos)
        value = word.group().lower() if word else ""
        if value not in _IS_VALUES:
            cur.fail("null, not_null, true, false or unknown")
        cur.pos += len(value)
        cur.skip_ws()
    else:
        raw, exact = _single_value(cur, in_logic=in_logic)
        value = _array(cur, raw, value_at, exact=exact) if modifier in ("any", "all") else raw
    if not in_logic and not cur.eof():
        cur.fail("the end of the value", hint=_QUOTE_HINT if op == "in" else None)
    return Filter(path, op, value, negate=negate, modifier=modifier)


def _modifier(cur: Cursor, op: str) -> str:
    at = cur.pos
    if op in _FTS:
        cur.pos += 1
        start = cur.pos
        while cur.pos < len(cur.text) and is_ident_char(cur.text[cur.pos]):
            cur.pos += 1
        language = cur.text[start : cur.pos].strip()
        if not language or cur.peek() != ")":
            cur.fail("a text search configuration and ')', e.g. fts(english)", at=cur.pos if language else start)
        cur.pos += 1
        return language
    if op in _QUANTIFIABLE:
        match = _MODIFIER.match(cur.text, cur.pos)
        if not match:
            cur.fail("(any) or (all)", at=at, hint="e.g. like(any).{a*,b*}")
        cur.pos = match.end()
        return match.group(1)
    cur.fail("'.' after the operator", at=at, hint=f"{op} takes no modifier; any/all go with eq, like, gt …")


def _single_value(cur: Cursor, *, in_logic: bool) -> tuple[str, bool]:
    """The value and whether it is the input verbatim (so positions inside it are exact)."""
    start = cur.pos
    if not in_logic:
        cur.pos = len(cur.text)
        return cur.text[start:], True
    if cur.peek() == '"':
        quoted = try_quoted(cur)
        # As PostgREST: a quoted value must end the condition, else the quotes are part of a raw value.
        if quoted is not None and (cur.eof() or cur.peek() in ",)"):
            return quoted, False
        cur.pos = start
    braces = _PG_ARRAY.match(cur.text, start)
    if braces:
        cur.pos = braces.end()
        return braces.group(), True
    while cur.pos < len(cur.text) and cur.text[cur.pos] not in ",)":
        cur.pos += 1
    return cur.text[start : cur.pos], True


def _list(cur: Cursor) -> tuple[str, ...]:
    """``(a,"b,c",d)`` for ``in``: quoted items unescaped, unquoted ones verbatim."""
    cur.skip_ws()
    if cur.peek() != "(":
        cur.fail("'(' and a list", hint="in takes a list: in.(1,2,3)")
    cur.pos += 1
    cur.skip_ws()
    items: list[str] = []
    if cur.peek() == ")":
        cur.pos += 1
        cur.skip_ws()
        return ()
    while True:
        start = cur.pos
        quoted = try_quoted(cur) if cur.peek() == '"' else None
        if quoted is not None and cur.peek() in (",", ")"):
            items.append(quoted)
        else:
            cur.pos = start
            while cur.pos < len(cur.text) and cur.text[cur.pos] not in ",)":
                cur.pos += 1
            items.append(cur.text[start : cur.pos])
        if cur.peek() != ",":
            break
        cur.pos += 1
    _close(cur, "',' or ')' to close the list")
    return tuple(items)


def _array(cur: Cursor, raw: str, at: int, *, exact: bool) -> tuple[str, ...]:
    """``{a,"b,c"}`` (PostgreSQL array syntax) for ``any``/``all``: elements trimmed unless quoted.

    ``at`` is where the value starts; positions inside it are exact unless it was unquoted first.
    """

    def fail(expected: str, i: int) -> NoReturn:
        cur.fail(expected, at=at + i if exact else at, hint="any/all take a list: like(any).{a*,b*}")

    end = len(raw.rstrip(WS))
    i = len(raw) - len(raw.lstrip(WS))
    if end - i < 2 or raw[i] != "{" or raw[end - 1] != "}":
        fail("a list in braces, e.g. {a,b}", i)
    end -= 1
    i += 1
    if not raw[i:end].strip(WS):
        return ()
    items: list[str] = []
    while True:
        while i < end and raw[i] in WS:
            i += 1
        if i < end and raw[i] == '"':
            sub = Cursor(raw[:end], cur.parameter)
            sub.pos = i
            quoted = try_quoted(sub)
            if quoted is None:
                fail('a closing double quote (")', i)
            items.append(quoted)
            i = sub.pos
            while i < end and raw[i] in WS:
                i += 1
        else:
            start = i
            while i < end and raw[i] != ",":
                i += 1
            item = raw[start:i].strip(WS)
            if not item or any(c in item for c in '{}"'):
                fail("a list element (double-quote one holding braces or quotes)", start)
            items.append(item)
        if i == end:
            return tuple(items)
        if raw[i] != ",":
            fail("',' or '}'", i)
        i += 1


# --- and / or -------------------------------------------------------------------------


def parse_logic(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, parameter: str = "or") -> BoolExpr:
    """A whole logic tree: ``or(…)``, ``and(…)``, ``not.or(…)`` or ``not.and(…)``.

    The parameter ``or=(a.eq.1,b.eq.2)`` is ``parse_logic("or(a.eq.1,b.eq.2)")``
    (PostgREST parses it the same way); `parse_read` does that for you.
    """
    check_depth(max_depth)
    check_text(text, parameter, "value")
    cur = Cursor(text, parameter)
    cur.skip_ws()
    group = _GROUP.match(text, cur.pos)
    if not group:
        cur.fail("and(…), or(…), not.and(…) or not.or(…)")
    cur.pos = group.end()
    expr = _logic_group(cur, group.group(2), negate=bool(group.group(1)), depth=1, max_depth=max_depth)
    _logic_end(cur)
    return expr


def logic_param(cur: Cursor, op: str, *, negate: bool, max_depth: int) -> BoolExpr:
    cur.skip_ws()
    if cur.peek() != "(":
        cur.fail("'(' and conditions", hint=f"{op}=(a.eq.1,b.lt.2)")
    cur.pos += 1
    expr = _logic_group(cur, op, negate=negate, depth=1, max_depth=max_depth)
    _logic_end(cur)
    return expr


def _logic_end(cur: Cursor) -> None:
    if not cur.eof():
        cur.fail("the end of the conditions", hint="unbalanced ')'" if cur.peek() == ")" else _QUOTE_HINT)


def _logic_group(cur: Cursor, op: str, *, negate: bool, depth: int, max_depth: int) -> BoolExpr:
    """The conditions after ``and(`` / ``or(`` (cursor just past the parenthesis)."""
    if depth > max_depth:
        cur.fail(f"at most {max_depth} levels of nested and/or")
    items: list[Condition] = []
    while True:
        cur.skip_ws()
        group = _GROUP.match(cur.text, cur.pos)
        if group:
            cur.pos = group.end()
            inner = group.group(2)
            items.append(_logic_group(cur, inner, negate=bool(group.group(1)), depth=depth + 1, max_depth=max_depth))
        else:
            path = read_field(cur, "a condition (column.operator.value) or and(…)/or(…)")
            if cur.peek() != ".":
                cur.fail(
                    "'.' and an operator after the column", hint="a condition is column.operator.value: age.gte.18"
                )
            cur.pos += 1
            items.append(op_expr(cur, path, in_logic=True))
        cur.skip_ws()
        if cur.peek() != ",":
            break
        cur.pos += 1
    _close(cur, "',' or ')'")
    return BoolExpr("and" if op == "and" else "or", tuple(items), negate=negate)


def _close(cur: Cursor, expected: str) -> None:
    """The ``)`` that ends a list or a group, and the blanks after it."""
    if cur.peek() != ")":
        cur.fail(expected, hint=_QUOTE_HINT)
    cur.pos += 1
    cur.skip_ws()
