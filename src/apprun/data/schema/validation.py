"""Checking what a client writes into a collection, and shaping it for the driver.

`validate_row` takes the decoded JSON body of an insert (``partial=False``) or
an update (``partial=True``) and returns ``{column: value}`` ready to be bound
as parameters for one dialect, or raises one `BadRequest`
(``data.validation_failed``) that lists every problem at once::

    {"code": "data.validation_failed", "message": "…",
     "details": {"fields": {
        "title": [{"code": "data.too_long", "message": "title must be at most 200 characters long.",
                   "params": {"limit": 200}}],
        "tenant_id": [{"code": "data.read_only_field", "message": "…"}],
        "titel": [{"code": "data.unknown_field", "message": "…", "hint": "Did you mean title?",
                   "suggestions": ["title"]}]}}}

Each problem has a stable ``code``, a ``message`` in the request's language
(the locale passed in, else the current request's, else English), and, where
they help a client build its own message, ``params`` (limits, allowed values)
— PocketBase's shape. A body that is not a JSON object is reported under the
key ``$body`` (`BODY_KEY`), which no field can be called. At most
`MAX_REPORTED_FIELDS` fields are reported (``"truncated": true`` beside
``fields`` says more were wrong) so a body of a million unknown keys cannot
make a reply a hundred times its size.

The mass-assignment guard lives here: a body naming a system column (``id``,
``tenant_id``, ``created_at``, ``updated_at``, ``created_by``) or the
collection's ``owner_field`` is refused (``data.read_only_field``), never
silently ignored. The caller fills the owner field itself (with the caller's
user id), so a missing required owner field is not reported here.
Many-to-many fields are refused the same way: they have no column and are
linked through their join collection.

Rules and decisions, per type (the value a driver receives on PostgreSQL /
on SQLite):

- ``integer``: a JSON integer, never a bool and never a float, even ``3.0``
  (PostgreSQL refuses a fraction for ``bigint``; a float that happens to be
  integral is still the client's mistake); -2^63..2^63-1. ``int`` / ``int``.
- ``number``: a JSON integer or float, not a bool, finite (NaN and ±inf are
  ``data.invalid_type``; an integer beyond a double's range is
  ``data.too_large``/``data.too_small``). ``float`` / ``float``.
- ``boolean``: JSON ``true``/``false`` only. ``bool`` / ``1``/``0``.
- text-likes (``text``, ``email``, ``url``, ``enum``, ``uuid``): a string of
  valid Unicode with no NUL character (PostgreSQL cannot store either, and a
  driver error would be a 500), at most 1 MiB of UTF-8 (`MAX_TEXT_BYTES`).
  ``min_length``/``max_length`` count characters (code points, as
  ``char_length()`` and SQLite's ``length()`` do) and apply, like
  ``pattern`` (a full match, Python ``re``), to the value as stored.
- ``email``: checked by ``email-validator`` without DNS; stored in its
  normalized form (domain lower-cased, Unicode NFC; the local part keeps its
  case, since RFC 5321 leaves it to the receiving server). So
  ``Ann@Example.COM`` is stored as ``Ann@example.com``.
- ``url``: an absolute ``http``/``https`` URL with a host, no whitespace or
  control characters, at most 2048 characters; stored as given
  (``javascript:`` and friends are refused, so a URL rendered as a link is
  not a script).
- ``uuid`` and ``relation``: the 8-4-4-4-12 hexadecimal form, any version
  (the nil UUID too); stored lower-case. Braces, ``urn:uuid:`` and the bare
  32-digit form are refused. That a relation's target exists in the same
  tenant is checked in SQL, not here.
- ``enum``: a string among the field's ``values`` (case-sensitive).
- ``date``: ``YYYY-MM-DD``. ``datetime.date`` / ``"YYYY-MM-DD"``.
- ``datetime``: RFC 3339 with seconds and a zone (``Z`` or ``±HH:MM``; a
  space or ``t`` may replace ``T``); a naive value is refused with a message
  asking for a zone, because guessing one silently shifts data. Fractions
  beyond microseconds are truncated. Converted to UTC: an aware
  ``datetime`` / the fixed-width text `canonical_datetime` makes,
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, so that text order is time order on
  SQLite and both databases return identical JSON.
- ``json``: any JSON value; bound as its JSON text on both dialects (the
  PostgreSQL column is ``jsonb``, which takes text), at most 1 MiB
  serialized (`MAX_JSON_BYTES`). Strings with NUL or lone surrogates and
  non-finite numbers are refused, as ``jsonb`` would refuse them.
- ``null``: for any field means SQL NULL (for ``json`` too: not the JSON
  literal ``null``); refused for a required field (``data.required``).

Inserts apply a field's ``default`` when the field is absent (an explicit
``null`` stays NULL), and the default is checked like a client's value, so a
broken default is reported rather than stored. A ``datetime`` field may have
the default ``"now"`` (`NOW`): the insert time, one instant for every such
field of a row. It is accepted only as a default, never from a client, and
not on updates (an "updated at" column is the system ``updated_at``).
``date`` defaults are literals only. Absent fields without a default are left
out of the result, so the database's own default (NULL) applies. Updates
(``partial=True``) check only the fields given, apply no default and may
return an empty dict; whether an empty update is an error is the caller's
call. The result lists columns in the collection's field order, whatever the
body's order, so statements built from it have a stable shape.

Filter values that arrive as URL text go through `coerce_filter_value`,
which checks the type only: a filter outside a field's ``min``/``max``,
lengths, pattern or enum values is legal and merely matches nothing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import math
import re
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from email_validator import EmailNotValidError, validate_email

from apprun.data.schema.model import SYSTEM_COLUMNS, CollectionDef, FieldDef
from apprun.data.schema.validation_checks import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_BYTES,
    MAX_TEXT_BYTES,
    MAX_URL_LENGTH,
    NOW,
    Invalid,
    Problem,
    Refused,
    check,
    check_nullable,
    encodable,
    parse_date,
    parse_datetime,
)
from apprun.kernel.context import current_context
from apprun.kernel.db.port import Dialect
from apprun.kernel.errors import BadRequest
from apprun.kernel.i18n import DEFAULT_LOCALE, translator
from apprun.kernel.ids import canonical_uuid
from apprun.kernel.times import utcnow

__all__ = [
    "BODY_KEY",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_BYTES",
    "MAX_REPORTED_FIELDS",
    "MAX_TEXT_BYTES",
    "MAX_URL_LENGTH",
    "NOW",
    "canonical_datetime",
    "coerce_filter_value",
    "validate_row",
    "validate_value",
]

#: Where problems with the body as a whole are reported (no field has a ``$``).
BODY_KEY: Final = "$body"
MAX_REPORTED_FIELDS: Final = 100
#: Unknown keys longer than this are echoed shortened and get no suggestion
#: (field names have at most 63 characters; difflib on megabyte keys is wasted work).
_MAX_KEY_ECHO = 64
_MAX_FILTER_ECHO = 200
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# --- public API ---------------------------------------------------------------------------------------------------


def canonical_datetime(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: the fixed-width text apprun stores on SQLite.

    Fixed width (four-digit year, always six fraction digits, always ``Z``)
    makes text order equal time order. A naive datetime raises `ValueError`:
    its zone would be a guess.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("canonical_datetime needs an aware datetime")
    u = value.astimezone(dt.UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def validate_row(
    collection: CollectionDef,
    body: Any,
    *,
    partial: bool,
    dialect: Dialect,
    locale: str | None = None,
) -> dict[str, Any]:
    """Check a client's JSON object for an insert (``partial=False``) or an update.

    Returns ``{column: value}`` bound-ready for ``dialect`` (see the module
    docstring), in the collection's field order; raises `BadRequest`
    ``data.validation_failed`` listing every problem.
    """
    if not isinstance(body, dict):
        _fail({BODY_KEY: [Problem("data.invalid_body", params={"type": _json_type(body)})]}, locale)
    fields = {f.name: f for f in collection.fields}
    owner = collection.owner_field
    problems: dict[str, list[Problem]] = {}
    checked: dict[str, Any] = {}
    truncated = False
    for key, value in body.items():
        if len(problems) >= MAX_REPORTED_FIELDS:
            truncated = True
            break
        field = fields.get(key)
        if key in SYSTEM_COLUMNS or (owner is not None and key == owner):
            # Mass assignment: refused loudly, because silently dropping the key
            # would let a client believe it had set the tenant or the owner.
            problems[key] = [Problem("data.read_only_field")]
        elif field is None:
            problems.setdefault(_echo_key(key), []).append(_unknown_field(collection, key))
        elif field.many:
            problems[key] = [_many_to_many(field)]
        else:
            try:
                checked[key] = check_nullable(field, value, now=None)
            except Refused as refused:
                problems[key] = [refused.problem]
            except Invalid as invalid:
                problems[key] = invalid.problems
    if not partial:
        now: dt.datetime | None = None
        for absent in collection.column_fields:
            if absent.name in body or absent.name == owner:
                continue
            if absent.default is not None:
                if absent.type == "datetime" and absent.default == NOW:
                    now = now or utcnow()
                try:
                    checked[absent.name] = check(absent, _plain_default(absent.default), now=now)
                except Refused as refused:
                    problems[absent.name] = [refused.problem]
                except Invalid as invalid:
                    problems[absent.name] = invalid.problems
            elif absent.required:
                problems[absent.name] = [Problem("data.required")]
    if problems:
        _fail(problems, locale, truncated=truncated)
    return {f.name: _bind(f, checked[f.name], dialect) for f in collection.column_fields if f.name in checked}


def validate_value(field: FieldDef, value: Any, *, dialect: Dialect, locale: str | None = None) -> Any:
    """One value for ``field``, bound-ready for ``dialect``; `BadRequest` ``data.validation_failed`` if not."""
    try:
        if field.many:
            raise Refused(_many_to_many(field))
        return _bind(field, check_nullable(field, value, now=None), dialect)
    except Refused as refused:
        _fail({field.name: [refused.problem]}, locale)
    except Invalid as invalid:
        _fail({field.name: invalid.problems}, locale)


def coerce_filter_value(field: FieldDef, raw: str, *, dialect: Dialect) -> Any:
    """A filter value from a URL (``views=gt.10``) as a bound-ready value for ``field``.

    Checks the type only (see the module docstring). `BadRequest`
    ``data.invalid_filter_value`` with details ``{field, value, expected}``.
    """
    t = field.type
    expected = _FILTER_EXPECTED.get(t, "text")

    def bad() -> BadRequest:
        shown = raw if len(raw) <= _MAX_FILTER_ECHO else raw[:_MAX_FILTER_ECHO] + "…"
        info = {"field": field.name, "value": shown, "expected": expected}
        return BadRequest("data.invalid_filter_value", params=info, details=info)

    if "\x00" in raw or not encodable(raw):  # PostgreSQL takes neither in a text parameter
        expected = "valid Unicode text without NUL characters"
        raise bad()
    value: Any
    if t == "integer":
        if not _INTEGER_TEXT.fullmatch(raw):
            raise bad()
        value = int(raw)
        if not INT64_MIN <= value <= INT64_MAX:
            raise bad()
    elif t == "number":
        if not _NUMBER_TEXT.fullmatch(raw):
            raise bad()
        value = float(raw)
        if not math.isfinite(value):
            raise bad()
    elif t == "boolean":
        lowered = raw.lower()
        if lowered not in ("true", "false"):
            raise bad()
        value = lowered == "true"
    elif t == "date":
        try:
            value = parse_date(raw)
        except Refused:
            raise bad() from None
    elif t == "datetime":
        try:
            value = parse_datetime(raw)
        except Refused:
            raise bad() from None
    elif t in ("uuid", "relation"):
        value = canonical_uuid(raw)
        if value is None:
            raise bad()
    elif t == "email":
        # Normalized like stored values so eq matches; a non-address is legal and matches nothing.
        try:
            value = str(validate_email(raw, check_deliverability=False).normalized)
        except EmailNotValidError:
            value = raw
    else:  # text, url, enum, json: compared as the client wrote them
        value = raw
    return _bind(field, value, dialect)


_FILTER_EXPECTED: Final[Mapping[str, str]] = {
    "integer": "integer",
    "number": "finite number",
    "boolean": "true or false",
    "date": "date (YYYY-MM-DD)",
    "datetime": "RFC 3339 date-time with a time zone",
    "uuid": "UUID",
    "relation": "UUID",
}


# --- reporting ----------------------------------------------------------------------------------------------------


def _fail(problems: Mapping[str, list[Problem]], locale: str | None, *, truncated: bool = False) -> NoReturn:
    count = len(problems)
    if count > MAX_REPORTED_FIELDS:
        problems = dict(itertools.islice(problems.items(), MAX_REPORTED_FIELDS))
        truncated = True
    details: dict[str, Any] = {"fields": _render(problems, locale)}
    if truncated:
        details["truncated"] = True
    raise BadRequest("data.validation_failed", params={"count": count}, details=details)


def _render(problems: Mapping[str, list[Problem]], locale: str | None) -> dict[str, list[dict[str, Any]]]:
    if locale is None:
        ctx = current_context()
        locale = ctx.locale if ctx is not None else DEFAULT_LOCALE
    tr = translator()
    out: dict[str, list[dict[str, Any]]] = {}
    for name, items in problems.items():
        entries = out.setdefault(name, [])
        for problem in items:
            text_params = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in problem.params.items()}
            entry: dict[str, Any] = {
                "code": problem.code,
                "message": tr.gettext(problem.message_id or problem.code, locale, {"field": name, **text_params}),
            }
            if problem.params:
                entry["params"] = dict(problem.params)
            if problem.suggestions:
                entry["hint"] = tr.gettext("data.did_you_mean", locale, {"names": ", ".join(problem.suggestions)})
                entry["suggestions"] = list(problem.suggestions)
            entries.append(entry)
    return out


def _echo_key(key: str) -> str:
    return key if len(key) <= _MAX_KEY_ECHO else key[:_MAX_KEY_ECHO] + "…"


def _unknown_field(collection: CollectionDef, key: str) -> Problem:
    # Hidden fields are never suggested: a hint must not reveal that a
    # secret column exists to someone who did not already know its name.
    candidates = [
        f.name for f in collection.fields if f.has_column and not f.hidden and f.name != collection.owner_field
    ]
    suggestions: list[str] = []
    if len(key) <= _MAX_KEY_ECHO:
        suggestions = difflib.get_close_matches(key.lower(), candidates, n=3, cutoff=0.6)
    return Problem("data.unknown_field", params={"collection": collection.name}, suggestions=suggestions)


def _many_to_many(field: FieldDef) -> Problem:
    return Problem("data.read_only_field", "data.read_only_field.many", {"through": field.through})


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


# --- defaults and binding -----------------------------------------------------------------------------------------


def _plain_default(value: Any) -> Any:
    """A default as JSON would carry it: YAML turns ``2024-05-01`` into a `date` before we see it."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _bind(field: FieldDef, value: Any, dialect: Dialect) -> Any:
    """A checked value as the driver of ``dialect`` takes it."""
    if value is None or dialect == "postgres":
        return value
    t = field.type
    if t == "datetime":
        return canonical_datetime(value)
    if t == "date":
        return value.isoformat()
    if t == "boolean":
        return 1 if value else 0
    return value
