"""The low level of the PostgREST query grammar: the cursor, its errors, names, JSON paths and casts.

A `Cursor` is a position in one parameter's name or value; every refusal of
the grammar goes through `Cursor.fail` (or `refuse`), so each is a
`BadRequest` ``data.invalid_query`` saying where and what was expected. The
readers here (`read_name`, `read_json_path`, `read_field`, `read_cast`,
`try_quoted`) are shared by `query.select`, `query.filters` and
`query.grammar`; the grammar itself and its decisions are described in
`apprun.data.query.grammar`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, NoReturn

from apprun.data.query.ast import CASTS, FieldPath
from apprun.kernel.errors import BadRequest

__all__ = ["DEFAULT_MAX_DEPTH", "MAX_VALUE_LENGTH"]

#: Characters in one parameter name or value.
MAX_VALUE_LENGTH = 4096
#: Levels of embedding in ``select`` and of nesting in ``and``/``or``.
DEFAULT_MAX_DEPTH = 5
#: A caller may lower ``max_depth`` or raise it this far; the parser recurses once per level.
_DEPTH_CEILING = 32

_IDENT_PUNCT = frozenset("0123456789_$ ")
_JSON_KEY_STOP = frozenset("(-:.,>)")
WS = " \t"
WORD = re.compile(r"[A-Za-z_]+")
_INDEX = re.compile(r"-?[0-9]+")

_CASTS_HINT = "casts: " + ", ".join(sorted(CASTS))


# --- errors and the cursor -------------------------------------------------------


def refuse(details: dict[str, Any], hint: str | None = None) -> NoReturn:
    raise BadRequest("data.invalid_query", details=details, hint=hint)


class Cursor:
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
        while self.pos < len(self.text) and self.text[self.pos] in WS:
            self.pos += 1

    def fail(self, expected: str, *, at: int | None = None, hint: str | None = None) -> NoReturn:
        pos = self.pos if at is None else at
        found = self.text[pos : pos + 20] if pos < len(self.text) else "end of input"
        refuse(
            {
                "parameter": self.parameter,
                "part": self.part,
                "position": pos,
                "expected": expected,
                "found": found,
            },
            hint,
        )


def check_text(text: str, parameter: str, part: Literal["name", "value"]) -> None:
    if len(text) > MAX_VALUE_LENGTH:
        refuse(
            {"parameter": parameter[:100], "part": part, "limit": MAX_VALUE_LENGTH, "expected": "a shorter text"},
            f"a parameter's name and value are at most {MAX_VALUE_LENGTH} characters each",
        )
    if "\x00" in text:
        Cursor(text, parameter, part).fail("any character but NUL", at=text.index("\x00"))


def check_depth(max_depth: int) -> None:
    if not 1 <= max_depth <= _DEPTH_CEILING:
        raise ValueError(f"max_depth must be between 1 and {_DEPTH_CEILING}")


# --- names, JSON paths, casts ------------------------------------------------------


def is_ident_char(c: str) -> bool:
    return c.isalpha() or c in _IDENT_PUNCT


def try_quoted(cur: Cursor) -> str | None:
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


def _quoted_name(cur: Cursor, what: str) -> str:
    start = cur.pos
    value = try_quoted(cur)
    if value is None:
        cur.fail('a closing double quote (")', at=start, hint='escape a " inside quotes as \\"')
    if not value:
        cur.fail(what, at=start, hint="a quoted name cannot be empty")
    return value


def _dash_joined(cur: Cursor, accept: Callable[[str], bool], what: str) -> str:
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


def read_name(cur: Cursor, what: str) -> str:
    if cur.peek() == '"':
        return _quoted_name(cur, what)
    return _dash_joined(cur, is_ident_char, what)


def _json_key(cur: Cursor) -> str:
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


def read_json_path(cur: Cursor) -> tuple[tuple[str, ...], bool]:
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


def read_field(cur: Cursor, what: str = "a column name") -> FieldPath:
    cur.skip_ws()
    column = read_name(cur, what)
    keys, as_text = read_json_path(cur)
    cur.skip_ws()
    return FieldPath(column, keys, as_text)


def read_cast(cur: Cursor) -> str | None:
    if not cur.startswith("::"):
        return None
    cur.pos += 2
    start = cur.pos
    while cur.pos < len(cur.text) and is_ident_char(cur.text[cur.pos]):
        cur.pos += 1
    name = cur.text[start : cur.pos].strip().lower()
    if name not in CASTS:
        cur.fail("a type to cast to", at=start, hint=_CASTS_HINT)
    cur.skip_ws()
    return name
