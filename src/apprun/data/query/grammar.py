"""PostgREST's URL query grammar, parsed into `apprun.data.query.ast`.

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
`ast.CASTS`.

Every refusal is a `BadRequest` ``data.invalid_query`` whose ``details`` say
which parameter, which part of it (``name`` or ``value``), the 0-based
``position`` in that part, what was ``expected`` and what was ``found``.
Input is bounded (`MAX_PARAMS`, `MAX_FILTERS`, `MAX_VALUE_LENGTH`,
``max_depth`` levels of embeds and of nested ``and``/``or``) and the parser
never recurses deeper than ``max_depth``.

The parser is split by part of the grammar: `lexer` (the cursor, its
errors, names, JSON paths, casts), `select` (``select``),
`filters` (filters and ``and``/``or``) and this module (``order``,
``limit``, ``offset``, ``columns``, ``on_conflict`` and the whole query
string), which also re-exports every public name of the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from apprun.data.query.ast import (
    Condition,
    Embed,
    EmbedOptions,
    FieldPath,
    Filter,
    OrderItem,
    ReadQuery,
    SelectItem,
    Star,
)
from apprun.data.query.filters import logic_param, op_expr, parse_filter, parse_logic
from apprun.data.query.lexer import (
    DEFAULT_MAX_DEPTH,
    MAX_VALUE_LENGTH,
    WORD,
    WS,
    Cursor,
    check_depth,
    check_text,
    read_field,
    read_json_path,
    read_name,
    refuse,
)
from apprun.data.query.select import parse_select

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
#: PostgreSQL's bigint: the largest limit or offset a database can take.
_MAX_INT = 2**63 - 1

_NULLS: dict[str, Literal["first", "last"]] = {"nullsfirst": "first", "nullslast": "last"}
_RESERVED_TOP = ("select", "on_conflict", "columns")
_DIGITS = re.compile(r"[0-9]{1,19}")


# --- order, limit, columns ------------------------------------------------------------


def parse_order(text: str, *, parameter: str = "order") -> tuple[OrderItem, ...]:
    """``order=age.desc.nullslast,name,data->>k.asc``."""
    check_text(text, parameter, "value")
    cur = Cursor(text, parameter)
    items: list[OrderItem] = []
    while True:
        path = read_field(cur)
        if cur.peek() == "(":
            cur.fail(
                "'.asc', '.desc', '.nullsfirst', '.nullslast', ',' or the end",
                hint="ordering by an embed's column is not supported; order inside it with rel.order=col",
            )
        desc: bool | None = None
        nulls: Literal["first", "last"] | None = None
        while cur.peek() == ".":
            cur.pos += 1
            match = WORD.match(cur.text, cur.pos)
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
    check_text(text, parameter, "value")
    digits = text.strip(WS)
    if not _DIGITS.fullmatch(digits) or int(digits) > _MAX_INT:
        Cursor(text, parameter).fail("a non-negative integer", hint=f"e.g. {parameter}=10")
    return int(digits)


def parse_columns(text: str, *, parameter: str = "columns") -> tuple[str, ...]:
    """``columns=a,b`` / ``on_conflict=a,b`` (names may be double-quoted, as supabase-js sends them)."""
    check_text(text, parameter, "value")
    cur = Cursor(text, parameter)
    names: list[str] = []
    while True:
        cur.skip_ws()
        names.append(read_name(cur, "a column name"))
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
    check_depth(max_depth)
    if len(params) > MAX_PARAMS:
        refuse(
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
        check_text(key, key, "name")
        check_text(value, key, "value")
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
            level.where.append(op_expr(Cursor(value, key), target, in_logic=False))
        elif target in ("and", "or", "not.and", "not.or"):
            op = target.removeprefix("not.")
            level.where.append(logic_param(Cursor(value, key), op, negate=target != op, max_depth=max_depth))
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
            refuse(
                {"parameter": key, "limit": MAX_FILTERS, "expected": f"at most {MAX_FILTERS} conditions"},
                "use in.(…) rather than many eq conditions on one column",
            )
    known = _embed_keys(select, "")
    for path, key in embed_refs:
        if path not in known:
            Cursor(key, key, "name").fail(
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
        refuse(
            {"parameter": key, "part": "name", "expected": "this parameter once"},
            "give select, order, limit, offset, on_conflict and columns once per level",
        )
    seen.add(what)


def _classify(key: str) -> tuple[FieldPath | str, str]:
    """What a parameter name (other than select/on_conflict/columns) addresses, and its embed path.

    The first item is the filtered field, or one of order, limit, offset,
    and, or, not.and, not.or.
    """
    cur = Cursor(key, key, "name")
    segments: list[tuple[str, bool]] = []
    while True:
        quoted = cur.peek() == '"'
        segments.append((read_name(cur, "a column name or an embed path"), quoted))
        if cur.peek() != ".":
            break
        cur.pos += 1
    keys, as_text = read_json_path(cur)
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
