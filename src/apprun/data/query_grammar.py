"""PostgREST's URL query grammar, parsed into `apprun.data.query_ast`.

apprun speaks PostgREST's grammar so that Supabase's client libraries work
unchanged; this module follows PostgREST's own parser
(``PostgREST.ApiRequest.QueryParams``) and its documentation
(docs.postgrest.org: references/api/tables_views, resource_embedding,
aggregate_functions, url_grammar). It is pure: no database, no HTTP, no
schema. It checks the grammar and the shape of names; the SQL compiler checks
every name against the collection.

Parameters (``parse_read``), in the order given::

    select=…                  parse_select      (once)
    order=… limit=… offset=…  parse_order, parse_limit (once per level)
    or=(…) and=(…) not.or=(…) not.and=(…)    parse_logic (may repeat; ANDed)
    on_conflict=a,b columns=a,b               parse_columns (once)
    <embed path>.<any of order, limit, offset, or, and, not.or, not.and>
    [<embed path>.]column[->json path]=[not.]op[(modifier)].value
                                              parse_filter (may repeat; ANDed)

Names are PostgREST's: runs of letters, digits, ``_``, ``$`` and spaces,
joined by ``-`` (not ``->``), trimmed; or double-quoted with backslash
escapes (``"information.cpe"``). JSON keys after ``->``/``->>`` may hold any
character but ``(-:.,>)`` unless quoted; ``-?[0-9]+`` is an array index.

Decisions where PostgREST is loose or silent (each is refused, never guessed):

- Trailing input after a complete value (``is.nullx``, ``in.(1)x``,
  ``data->a.b`` as a key) is an error; Parsec silently ignored some of it.
- ``->>`` may only be the last arrow (PostgreSQL cannot apply ``->`` to text).
- ``in.()`` is the empty list (the compiler makes it match nothing).
- Unquoted ``in`` elements keep their spaces, as in PostgREST: ``in.(a, b)``
  is ``("a", " b")``.
- ``op(any)``/``op(all)`` take a ``{…}`` list (PostgreSQL array literal
  syntax: elements trimmed unless double-quoted); it becomes a tuple.
- In ``and``/``or``, a value is double-quoted (quotes removed, backslash
  escapes honoured), or a ``{…}`` without inner braces, or raw up to ``,`` or
  ``)``, exactly as PostgREST: nested JSON with commas must be quoted.
- ``select``, ``order``, ``limit``, ``offset``, ``on_conflict`` and
  ``columns`` may appear once per level; PostgREST silently kept one.
- An embedded parameter (``comments.limit``) must name an embed of
  ``select`` by its key (alias, else relation), as PostgREST's PGRST108.
- ``!a!b`` (two hints) and ``!inner!left`` are refused, not first-one-wins.
- ``select=`` (empty) selects nothing, like PostgREST (rows are ``{}``).
- NUL characters are refused anywhere: no database stores them in text.

Not supported: range operators (``sl``, ``sr``, ``nxl``, ``nxr``, ``adj``),
ordering by an embed's column (``order=rel(col).desc``; use
``rel.order=col``), an alias on a spread embed, conditions on embedded
columns inside ``or``/``and`` (``or=(rel.col.eq.1)``), and casts outside
`query_ast.CASTS`.

Every refusal is a `BadRequest` ``data.invalid_query`` whose ``details`` say
which parameter, which part of it (``name`` or ``value``), the 0-based
``position`` in that part, what was ``expected`` and what was ``found``.
Input is bounded (`MAX_PARAMS`, `MAX_FILTERS`, `MAX_VALUE_LENGTH`,
``max_depth`` levels of embeds and of nested ``and``/``or``) and the parser
never recurses deeper than ``max_depth``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from apprun.data.query_ast import (
    AGGREGATES,
    CASTS,
    FILTER_OPS,
    BoolExpr,
    Condition,
    Embed,
    EmbedOptions,
    FieldPath,
    Filter,
    OrderItem,
    ReadQuery,
    SelectField,
    SelectItem,
    Star,
)
from apprun.kernel.errors import BadRequest

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_FILTERS",
    "MAX_PARAMS",
    "MAX_VALUE_LENGTH",
    "parse_columns",
    "parse_filter",
    "parse_limit",
    "parse_logic",
    "parse_order",
    "parse_read",
    "parse_select",
]

#: Query-string pairs one request may carry.
MAX_PARAMS = 200
#: Conditions (leaves, counting those inside ``and``/``or``) one request may carry.
MAX_FILTERS = 100
#: Characters in one parameter name or value.
MAX_VALUE_LENGTH = 4096
#: Levels of embedding in ``select`` and of nesting in ``and``/``or``.
DEFAULT_MAX_DEPTH = 5
#: A caller may lower ``max_depth`` or raise it this far; the parser recurses once per level.
_DEPTH_CEILING = 32
#: PostgreSQL's bigint: the largest limit or offset a database can take.
_MAX_INT = 2**63 - 1

_QUANTIFIABLE = frozenset({"eq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
_FTS = frozenset({"fts", "plfts", "phfts", "wfts"})
_RANGE_OPS = frozenset({"sl", "sr", "nxl", "nxr", "adj"})
_IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
_NULLS: dict[str, Literal["first", "last"]] = {"nullsfirst": "first", "nullslast": "last"}
_RESERVED_TOP = ("select", "on_conflict", "columns")

_IDENT_PUNCT = frozenset("0123456789_$ ")
_JSON_KEY_STOP = frozenset("(-:.,>)")
_WS = " \t"
_WORD = re.compile(r"[A-Za-z_]+")
_INDEX = re.compile(r"-?[0-9]+")
_GROUP = re.compile(r"(not\.)?(and|or)[ \t]*\(")
_MODIFIER = re.compile(r"\((any|all)\)")
_DIGITS = re.compile(r"[0-9]{1,19}")
#: PostgREST's array value inside and/or: no nested braces, so scanning stays linear.
_PG_ARRAY = re.compile(r"\{[^{}]*\}")

_OPERATORS_HINT = "operators: " + ", ".join(sorted(FILTER_OPS)) + "; negate with not. (not.eq.5)"
_CASTS_HINT = "casts: " + ", ".join(sorted(CASTS))
_QUOTE_HINT = 'a value containing "," or ")" must be double-quoted, e.g. name.eq."Smith, J."'


# --- errors and the cursor -------------------------------------------------------


def _refuse(details: dict[str, Any], hint: str | None = None) -> NoReturn:
    raise BadRequest("data.invalid_query", details=details, hint=hint)


class _Cursor:
    """A position in one parameter's name or value, and how to report an error there."""

    __slots__ = ("parameter", "part", "pos", "text")

    def __init__(self, text: str, parameter: str, part: Literal["name", "value"] = "value") -> None:
        self.text = text
        self.parameter = parameter
        self.part = part
        self.pos = 0

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def eof(self) -> bool:
        return self.pos >= len(self.text)

    def startswith(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.pos)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def fail(self, expected: str, *, at: int | None = None, hint: str | None = None) -> NoReturn:
        pos = self.pos if at is None else at
        found = self.text[pos : pos + 20] if pos < len(self.text) else "end of input"
        _refuse(
            {
                "parameter": self.parameter,
                "part": self.part,
                "position": pos,
                "expected": expected,
                "found": found,
            },
            hint,
        )


def _check_text(text: str, parameter: str, part: Literal["name", "value"]) -> None:
    if len(text) > MAX_VALUE_LENGTH:
        _refuse(
            {"parameter": parameter[:100], "part": part, "limit": MAX_VALUE_LENGTH, "expected": "a shorter text"},
            f"a parameter's name and value are at most {MAX_VALUE_LENGTH} characters each",
        )
    if "\x00" in text:
        _Cursor(text, parameter, part).fail("any character but NUL", at=text.index("\x00"))


def _check_depth(max_depth: int) -> None:
    if not 1 <= max_depth <= _DEPTH_CEILING:
        raise ValueError(f"max_depth must be between 1 and {_DEPTH_CEILING}")


# --- names, JSON paths, casts ------------------------------------------------------


def _is_ident_char(c: str) -> bool:
    return c.isalpha() or c in _IDENT_PUNCT


def _try_quoted(cur: _Cursor) -> str | None:
    """A double-quoted string with backslash escapes, or None (cursor unmoved) if unterminated."""
    start, text = cur.pos, cur.text
    i = start + 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            cur.pos = i + 1
            return "".join(out)
        else:
            out.append(c)
            i += 1
    return None


def _quoted_name(cur: _Cursor, what: str) -> str:
    start = cur.pos
    value = _try_quoted(cur)
    if value is None:
        cur.fail('a closing double quote (")', at=start, hint='escape a " inside quotes as \\"')
    if not value:
        cur.fail(what, at=start, hint="a quoted name cannot be empty")
    return value


def _dash_joined(cur: _Cursor, accept: Callable[[str], bool], what: str) -> str:
    """Runs of ``accept``-ed characters joined by ``-`` (never the ``-`` of ``->``), each trimmed."""
    parts: list[str] = []
    while True:
        start = cur.pos
        while cur.pos < len(cur.text) and accept(cur.text[cur.pos]):
            cur.pos += 1
        part = cur.text[start : cur.pos].strip()
        if not part:
            cur.fail(what)
        parts.append(part)
        if cur.peek() == "-" and cur.peek(1) != ">":
            cur.pos += 1
            continue
        return "-".join(parts)


def _name(cur: _Cursor, what: str) -> str:
    if cur.peek() == '"':
        return _quoted_name(cur, what)
    return _dash_joined(cur, _is_ident_char, what)


def _json_key(cur: _Cursor) -> str:
    index = _INDEX.match(cur.text, cur.pos)
    if index:
        end = index.end()
        after = cur.text[end : end + 1]
        if after in ("", ".", ",", ")", ":", " ", "\t") or cur.text.startswith("->", end):
            cur.pos = end
            return index.group()
    what = "a JSON key or array index after the arrow"
    if cur.peek() == '"':
        return _quoted_name(cur, what)
    return _dash_joined(cur, lambda c: c not in _JSON_KEY_STOP, what)


def _json_path(cur: _Cursor) -> tuple[tuple[str, ...], bool]:
    keys: list[str] = []
    as_text = False
    while cur.startswith("->"):
        if as_text:
            cur.fail("no arrow after ->> (it yields text)", hint="use -> for every step but the last: data->a->>b")
        if cur.startswith("->>"):
            cur.pos += 3
            as_text = True
        else:
            cur.pos += 2
        keys.append(_json_key(cur))
    return tuple(keys), as_text


def _field(cur: _Cursor, what: str = "a column name") -> FieldPath:
    cur.skip_ws()
    column = _name(cur, what)
    keys, as_text = _json_path(cur)
    cur.skip_ws()
    return FieldPath(column, keys, as_text)


def _cast(cur: _Cursor) -> str | None:
    if not cur.startswith("::"):
        return None
    cur.pos += 2
    start = cur.pos
    while cur.pos < len(cur.text) and _is_ident_char(cur.text[cur.pos]):
        cur.pos += 1
    name = cur.text[start : cur.pos].strip().lower()
    if name not in CASTS:
        cur.fail("a type to cast to", at=start, hint=_CASTS_HINT)
    cur.skip_ws()
    return name


# --- select -------------------------------------------------------------------------


def parse_select(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, parameter: str = "select") -> tuple[SelectItem, ...]:
    """``select=``: columns, JSON paths, casts, aggregates and embeds (empty text: nothing)."""
    _check_depth(max_depth)
    _check_text(text, parameter, "value")
    return _select_list(_Cursor(text, parameter), 0, max_depth, nested=False)


def _select_list(cur: _Cursor, depth: int, max_depth: int, *, nested: bool) -> tuple[SelectItem, ...]:
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


def _end_of_item(cur: _Cursor) -> None:
    cur.skip_ws()
    if not (cur.eof() or cur.peek() in ",)"):
        hint = None
        if cur.peek() == "(":
            hint = "an embed is relation(columns); a column with a JSON path or a cast cannot be embedded"
        elif cur.peek() == ":":
            hint = "an alias is alias:column and a cast is column::type"
        cur.fail("',' or ')' after the select item", hint=hint)


def _select_item(cur: _Cursor, depth: int, max_depth: int) -> SelectItem:
    cur.skip_ws()
    if cur.startswith("..."):
        at = cur.pos
        cur.pos += 3
        relation = _name(cur, "the name of the embed to spread")
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
    name = _name(cur, "a column, * or an embed")
    if name == "count" and not quoted and cur.startswith("()"):
        cur.pos += 2
        cur.skip_ws()
        cast = _cast(cur)
        _end_of_item(cur)
        return SelectField(None, alias=alias, cast=cast, aggregate="count")
    if cur.peek() in ("!", "("):
        if name == "count" and not quoted:
            cur.fail("count() with nothing inside", hint="count() counts rows; col.count() counts a column's values")
        return _embed(cur, name, alias, depth, max_depth, at=at, spread=False)
    keys, as_text = _json_path(cur)
    path = FieldPath(name, keys, as_text)
    cur.skip_ws()
    first_cast = _cast(cur)
    if cur.peek() != ".":
        _end_of_item(cur)
        return SelectField(path, alias=alias, cast=first_cast)
    cur.pos += 1
    word = _WORD.match(cur.text, cur.pos)
    aggregate = word.group() if word else ""
    if aggregate not in AGGREGATES or not cur.text.startswith("()", cur.pos + len(aggregate)):
        cur.fail(
            "an aggregate: avg(), count(), max(), min() or sum()",
            hint="select lists columns; an embedded resource's columns go inside rel(...)",
        )
    cur.pos += len(aggregate) + 2
    cur.skip_ws()
    result_cast = _cast(cur)
    _end_of_item(cur)
    return SelectField(path, alias=alias, cast=result_cast, aggregate=aggregate, input_cast=first_cast)


def _alias(cur: _Cursor) -> str | None:
    """``alias:`` if the item starts with one (cursor after it), else None (cursor unmoved)."""
    start = cur.pos
    if not (cur.peek() == '"' or _is_ident_char(cur.peek())):
        return None
    name = _name(cur, "a column, * or an embed")
    cur.skip_ws()
    if cur.peek() == ":" and cur.peek(1) != ":":
        cur.pos += 1
        cur.skip_ws()
        return name
    cur.pos = start
    return None


def _embed(
    cur: _Cursor, relation: str, alias: str | None, depth: int, max_depth: int, *, at: int, spread: bool
) -> Embed:
    hint: str | None = None
    join: str | None = None
    while cur.peek() == "!":
        bang = cur.pos
        cur.pos += 1
        quoted = cur.peek() == '"'
        word = _name(cur, "a foreign key hint, inner or left after '!'")
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


# --- filters ------------------------------------------------------------------------


def parse_filter(column_part: str, value: str) -> Filter:
    """``column[->path]=[not.]op[(modifier)].value`` (the column without an embed path)."""
    _check_text(column_part, column_part, "name")
    _check_text(value, column_part, "value")
    key = _Cursor(column_part, column_part, "name")
    path = _field(key)
    if not key.eof():
        hint = "embedded filters (embed.column) are read by parse_read" if key.peek() == "." else None
        key.fail("the end of the column name", hint=hint)
    return _op_expr(_Cursor(value, column_part), path, in_logic=False)


def _op_expr(cur: _Cursor, path: FieldPath, *, in_logic: bool) -> Filter:
    negate = cur.startswith("not.")
    if negate:
        cur.pos += 4
    at = cur.pos
    word = _WORD.match(cur.text, cur.pos)
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
        word = _WORD.match(cur.text, cur.pos)
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


def _modifier(cur: _Cursor, op: str) -> str:
    at = cur.pos
    if op in _FTS:
        cur.pos += 1
        start = cur.pos
        while cur.pos < len(cur.text) and _is_ident_char(cur.text[cur.pos]):
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


def _single_value(cur: _Cursor, *, in_logic: bool) -> tuple[str, bool]:
    """The value and whether it is the input verbatim (so positions inside it are exact)."""
    start = cur.pos
    if not in_logic:
        cur.pos = len(cur.text)
        return cur.text[start:], True
    if cur.peek() == '"':
        quoted = _try_quoted(cur)
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


def _list(cur: _Cursor) -> tuple[str, ...]:
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
        quoted = _try_quoted(cur) if cur.peek() == '"' else None
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
    if cur.peek() != ")":
        cur.fail("',' or ')' to close the list", hint=_QUOTE_HINT)
    cur.pos += 1
    cur.skip_ws()
    return tuple(items)


def _array(cur: _Cursor, raw: str, at: int, *, exact: bool) -> tuple[str, ...]:
    """``{a,"b,c"}`` (PostgreSQL array syntax) for ``any``/``all``: elements trimmed unless quoted.

    ``at`` is where the value starts; positions inside it are exact unless it was unquoted first.
    """

    def fail(expected: str, i: int) -> NoReturn:
        cur.fail(expected, at=at + i if exact else at, hint="any/all take a list: like(any).{a*,b*}")

    end = len(raw.rstrip(_WS))
    i = len(raw) - len(raw.lstrip(_WS))
    if end - i < 2 or raw[i] != "{" or raw[end - 1] != "}":
        fail("a list in braces, e.g. {a,b}", i)
    end -= 1
    i += 1
    if not raw[i:end].strip(_WS):
        return ()
    items: list[str] = []
    while True:
        while i < end and raw[i] in _WS:
            i += 1
        if i < end and raw[i] == '"':
            sub = _Cursor(raw[:end], cur.parameter)
            sub.pos = i
            quoted = _try_quoted(sub)
            if quoted is None:
                fail('a closing double quote (")', i)
            items.append(quoted)
            i = sub.pos
            while i < end and raw[i] in _WS:
                i += 1
        else:
            start = i
            while i < end and raw[i] != ",":
                i += 1
            item = raw[start:i].strip(_WS)
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
    _check_depth(max_depth)
    _check_text(text, parameter, "value")
    cur = _Cursor(text, parameter)
    cur.skip_ws()
    group = _GROUP.match(text, cur.pos)
    if not group:
        cur.fail("and(…), or(…), not.and(…) or not.or(…)")
    cur.pos = group.end()
    expr = _logic_group(cur, group.group(2), negate=bool(group.group(1)), depth=1, max_depth=max_depth)
    _logic_end(cur)
    return expr


def _logic_param(cur: _Cursor, op: str, *, negate: bool, max_depth: int) -> BoolExpr:
    cur.skip_ws()
    if cur.peek() != "(":
        cur.fail("'(' and conditions", hint=f"{op}=(a.eq.1,b.lt.2)")
    cur.pos += 1
    expr = _logic_group(cur, op, negate=negate, depth=1, max_depth=max_depth)
    _logic_end(cur)
    return expr


def _logic_end(cur: _Cursor) -> None:
    if not cur.eof():
        cur.fail("the end of the conditions", hint="unbalanced ')'" if cur.peek() == ")" else _QUOTE_HINT)


def _logic_group(cur: _Cursor, op: str, *, negate: bool, depth: int, max_depth: int) -> BoolExpr:
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
            path = _field(cur, "a condition (column.operator.value) or and(…)/or(…)")
            if cur.peek() != ".":
                cur.fail(
                    "'.' and an operator after the column", hint="a condition is column.operator.value: age.gte.18"
                )
            cur.pos += 1
            items.append(_op_expr(cur, path, in_logic=True))
        cur.skip_ws()
        if cur.peek() != ",":
            break
        cur.pos += 1
    if cur.peek() != ")":
        cur.fail("',' or ')'", hint=_QUOTE_HINT)
    cur.pos += 1
    cur.skip_ws()
    return BoolExpr("and" if op == "and" else "or", tuple(items), negate=negate)


# --- order, limit, columns ------------------------------------------------------------


def parse_order(text: str, *, parameter: str = "order") -> tuple[OrderItem, ...]:
    """``order=age.desc.nullslast,name,data->>k.asc``."""
    _check_text(text, parameter, "value")
    cur = _Cursor(text, parameter)
    items: list[OrderItem] = []
    while True:
        path = _field(cur)
        if cur.peek() == "(":
            cur.fail(
                "'.asc', '.desc', '.nullsfirst', '.nullslast', ',' or the end",
                hint="ordering by an embed's column is not supported; order inside it with rel.order=col",
            )
        desc: bool | None = None
        nulls: Literal["first", "last"] | None = None
        while cur.peek() == ".":
            cur.pos += 1
            match = _WORD.match(cur.text, cur.pos)
            word = match.group() if match else ""
            if word in ("asc", "desc") and desc is None and nulls is None:
                desc = word == "desc"
            elif word in _NULLS and nulls is None:
                nulls = _NULLS[word]
            else:
                cur.fail("nullsfirst or nullslast" if desc is not None else "asc, desc, nullsfirst or nullslast")
            cur.pos += len(word)
        cur.skip_ws()
        items.append(OrderItem(path, desc=bool(desc), nulls=nulls))
        if cur.peek() != ",":
            break
        cur.pos += 1
    if not cur.eof():
        cur.fail("',' or the end of order")
    return tuple(items)


def parse_limit(text: str, *, parameter: str = "limit") -> int:
    """``limit=`` or ``offset=``: a non-negative integer."""
    _check_text(text, parameter, "value")
    digits = text.strip(_WS)
    if not _DIGITS.fullmatch(digits) or int(digits) > _MAX_INT:
        _Cursor(text, parameter).fail("a non-negative integer", hint=f"e.g. {parameter}=10")
    return int(digits)


def parse_columns(text: str, *, parameter: str = "columns") -> tuple[str, ...]:
    """``columns=a,b`` / ``on_conflict=a,b`` (names may be double-quoted, as supabase-js sends them)."""
    _check_text(text, parameter, "value")
    cur = _Cursor(text, parameter)
    names: list[str] = []
    while True:
        cur.skip_ws()
        names.append(_name(cur, "a column name"))
        cur.skip_ws()
        if cur.peek() != ",":
            break
        cur.pos += 1
    if not cur.eof():
        cur.fail("',' or the end of the list")
    return tuple(names)


# --- the whole query string -----------------------------------------------------------


@dataclass
class _Level:
    where: list[Condition] = field(default_factory=list)
    order: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None


def parse_read(params: Sequence[tuple[str, str]], *, max_depth: int = DEFAULT_MAX_DEPTH) -> ReadQuery:
    """Every decoded query-string pair, in order, as one `ReadQuery`."""
    _check_depth(max_depth)
    if len(params) > MAX_PARAMS:
        _refuse(
            {"parameter": None, "limit": MAX_PARAMS, "expected": f"at most {MAX_PARAMS} parameters"},
            "split the request or move conditions into and=(…)/or=(…)",
        )
    select: tuple[SelectItem, ...] = (Star(),)
    on_conflict: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    levels: dict[str, _Level] = {}
    seen: set[tuple[str, str]] = set()
    embed_refs: list[tuple[str, str]] = []
    filters = 0
    for key, value in params:
        _check_text(key, key, "name")
        _check_text(value, key, "value")
        if key in _RESERVED_TOP:
            _once(seen, ("", key), key)
            if key == "select":
                select = parse_select(value, max_depth=max_depth)
            elif key == "on_conflict":
                on_conflict = parse_columns(value, parameter=key)
            else:
                columns = parse_columns(value, parameter=key)
            continue
        target, path = _classify(key)
        level = levels.setdefault(path, _Level())
        if path:
            embed_refs.append((path, key))
        if isinstance(target, FieldPath):
            level.where.append(_op_expr(_Cursor(value, key), target, in_logic=False))
        elif target in ("and", "or", "not.and", "not.or"):
            op = target.removeprefix("not.")
            level.where.append(_logic_param(_Cursor(value, key), op, negate=target != op, max_depth=max_depth))
        else:
            _once(seen, (path, target), key)
            if target == "order":
                level.order = parse_order(value, parameter=key)
            elif target == "limit":
                level.limit = parse_limit(value, parameter=key)
            else:
                level.offset = parse_limit(value, parameter=key)
            continue
        filters += _count_filters(level.where[-1])
        if filters > MAX_FILTERS:
            _refuse(
                {"parameter": key, "limit": MAX_FILTERS, "expected": f"at most {MAX_FILTERS} conditions"},
                "use in.(…) rather than many eq conditions on one column",
            )
    known = _embed_keys(select, "")
    for path, key in embed_refs:
        if path not in known:
            _Cursor(key, key, "name").fail(
                "the key (alias, else name) of an embed in select",
                at=0,
                hint=f"select the embed, e.g. select=*,{path.split('.')[0]}(*), or use its alias",
            )
    top = levels.pop("", _Level())
    return ReadQuery(
        select=select,
        where=tuple(top.where),
        order=top.order,
        limit=top.limit,
        offset=top.offset,
        embedded={
            path: EmbedOptions(where=tuple(lv.where), order=lv.order, limit=lv.limit, offset=lv.offset)
            for path, lv in levels.items()
        },
        on_conflict=on_conflict,
        columns=columns,
    )


def _once(seen: set[tuple[str, str]], what: tuple[str, str], key: str) -> None:
    if what in seen:
        _refuse(
            {"parameter": key, "part": "name", "expected": "this parameter once"},
            "give select, order, limit, offset, on_conflict and columns once per level",
        )
    seen.add(what)


def _classify(key: str) -> tuple[FieldPath | str, str]:
    """What a parameter name (other than select/on_conflict/columns) addresses, and its embed path.

    The first item is the filtered field, or one of order, limit, offset,
    and, or, not.and, not.or.
    """
    cur = _Cursor(key, key, "name")
    segments: list[tuple[str, bool]] = []
    while True:
        quoted = cur.peek() == '"'
        segments.append((_name(cur, "a column name or an embed path"), quoted))
        if cur.peek() != ".":
            break
        cur.pos += 1
    keys, as_text = _json_path(cur)
    if not cur.eof():
        cur.fail("'.', '->', '->>' or the end of the name")
    last, last_quoted = segments.pop()
    target: FieldPath | str = FieldPath(last, keys, as_text)
    # As PostgREST: these words are options only unquoted and without a JSON path.
    if not keys and not last_quoted and last in ("order", "limit", "offset", "and", "or"):
        target = last
        if last in ("and", "or") and segments and segments[-1] == ("not", False):
            target = "not." + last
            segments.pop()
    names = [name for name, _ in segments]
    if any("." in name for name in names):
        cur.fail("an embed name without '.'", at=0)
    return target, ".".join(names)


def _count_filters(condition: Condition) -> int:
    if isinstance(condition, Filter):
        return 1
    return sum(_count_filters(item) for item in condition.items)


def _embed_keys(items: tuple[SelectItem, ...], prefix: str) -> set[str]:
    keys: set[str] = set()
    for item in items:
        if isinstance(item, Embed):
            path = prefix + item.key
            keys.add(path)
            keys |= _embed_keys(item.select, path + ".")
    return keys
