"""The per-type checks behind `apprun.data.schema.validation`: is this value right for this field?

Each check takes a decoded JSON value and returns it dialect-neutral (an
`int`, a `float`, a `date`, an aware UTC `datetime`, normalized text, JSON
text …) or raises `Refused` (one problem, nothing further worth checking) or
`Invalid` (several problems, all reported). The rules, per type, are listed
in `apprun.data.schema.validation`'s docstring; turning problems into a reply and
binding values for a dialect stay there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from apprun.data.schema.model import FieldDef
from apprun.kernel.ids import canonical_uuid

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_URL_LENGTH",
    "NOW",
]

#: The default of a ``datetime`` field meaning "the insert time".
NOW: Final = "now"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_TEXT_BYTES: Final = 1024 * 1024
MAX_JSON_BYTES: Final = 1024 * 1024
MAX_URL_LENGTH: Final = 2048

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,32}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
#: ``\u0000`` in JSON text, not preceded by an escaped backslash (``\\u0000`` is the text ``\u0000``).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# --- problems -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one field (or with the body)."""

    code: str
    #: The catalog id of the message when it is more precise than the code's own.
    message_id: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    suggestions: Sequence[str] = ()


class Refused(Exception):
    """Raised inside a check: this value has one problem and no further check makes sense."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.code)
        self.problem = problem


def refuse(code: str, message_id: str | None = None, **params: Any) -> Refused:
    return Refused(Problem(code, message_id, params))


class Invalid(Exception):
    """Raised inside a check: this value has several problems (all reported)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(", ".join(p.code for p in problems))
        self.problems = problems


# --- checks -------------------------------------------------------------------------------------------------------


def check_nullable(field: FieldDef, value: Any, *, now: dt.datetime | None) -> Any:
    if value is None:
        if field.required:
            raise refuse("data.required")
        return None
    return check(field, value, now=now)


def check(field: FieldDef, value: Any, *, now: dt.datetime | None) -> Any:
    """The value as a dialect-neutral Python value (date, aware datetime, JSON text …), or raise."""
    t = field.type
    if t == "integer":
        return _check_integer(field, value)
    if t == "number":
        return _check_number(field, value)
    if t == "boolean":
        if not isinstance(value, bool):
            raise refuse("data.invalid_type", type="boolean")
        return value
    if t == "json":
        return _check_json(value)
    if t == "datetime" and now is not None and value == NOW:
        return now
    if not isinstance(value, str):  # every other type is written as a JSON string
        raise refuse("data.invalid_type", type="string")
    return _check_string(field, value)


def _check_string(field: FieldDef, value: str) -> Any:
    t = field.type
    if t == "date":
        return parse_date(value)
    if t == "datetime":
        return parse_datetime(value)
    if t == "relation":
        return _check_uuid(value)
    return _check_text(field, value)


def _check_uuid(value: str) -> str:
    found = canonical_uuid(value)
    if found is None:
        raise refuse("data.invalid_format", "data.invalid_format.uuid")
    return found


def _check_integer(field: FieldDef, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse("data.invalid_type", type="integer")
    if value < INT64_MIN:
        raise refuse("data.too_small", limit=INT64_MIN)
    if value > INT64_MAX:
        raise refuse("data.too_large", limit=INT64_MAX)
    _check_range(field, value)
    return value


def _check_number(field: FieldDef, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse("data.invalid_type", type="number")
    if isinstance(value, float) and not math.isfinite(value):
        raise refuse("data.invalid_type", "data.invalid_type.finite", type="number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double's range
        limit = _plain_number(sys.float_info.max)
        if value > 0:
            raise refuse("data.too_large", limit=limit) from None
        raise refuse("data.too_small", limit=-limit) from None
    _check_range(field, number)
    return number


def _check_range(field: FieldDef, value: float) -> None:
    if field.min is not None and value < field.min:
        raise refuse("data.too_small", limit=_plain_number(field.min))
    if field.max is not None and value > field.max:
        raise refuse("data.too_large", limit=_plain_number(field.max))


def _plain_number(value: float) -> int | float:
    """``0.0`` → ``0`` in messages and params (a bound may be given as a float)."""
    if isinstance(value, int):
        return value
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def _check_text(field: FieldDef, value: str) -> str:
    if field.max_length is not None and len(value) > field.max_length:
        raise refuse("data.too_long", limit=field.max_length)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800" decodes to one)
        raise refuse("data.invalid_format", "data.invalid_format.text") from None
    if "\x00" in value:
        raise refuse("data.invalid_format", "data.invalid_format.text")
    if size > MAX_TEXT_BYTES:
        raise refuse("data.too_long", "data.too_long.bytes", limit=MAX_TEXT_BYTES)
    t = field.type
    if t == "email":
        try:
            value = str(validate_email(value, check_deliverability=False).normalized)
        except EmailNotValidError:
            raise refuse("data.invalid_format", "data.invalid_format.email") from None
    elif t == "url":
        if len(value) > MAX_URL_LENGTH:
            raise refuse("data.too_long", limit=MAX_URL_LENGTH)
        if not _is_web_url(value):
            raise refuse("data.invalid_format", "data.invalid_format.url")
    elif t == "uuid":
        value = _check_uuid(value)
    elif t == "enum" and value not in (field.values or ()):
        raise refuse("data.invalid_choice", values=list(field.values or ()))
    problems: list[Problem] = []
    too_long = field.max_length is not None and len(value) > field.max_length  # normalizing may lengthen it
    if too_long:
        problems.append(Problem("data.too_long", params={"limit": field.max_length}))
    if field.min_length is not None and len(value) < field.min_length:
        problems.append(Problem("data.too_short", params={"limit": field.min_length}))
    # The pattern is the administrator's; it only ever sees values within the
    # length limits above, which bounds what a backtracking one can cost.
    if field.pattern is not None and not too_long and re.fullmatch(field.pattern, value) is None:
        problems.append(Problem("data.pattern_mismatch", params={"pattern": field.pattern}))
    if problems:
        raise Invalid(problems)
    return value


def encodable(value: str) -> bool:
    """False for a string with a lone surrogate (JSON ``"\\ud800"`` decodes to one; UTF-8 cannot hold it)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_web_url(value: str) -> bool:
    if _URL_FORBIDDEN.search(value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_date(value: str) -> dt.date:
    match = _DATE.fullmatch(value)
    if match is None:
        raise refuse("data.invalid_format", "data.invalid_format.date")
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise refuse("data.invalid_format", "data.invalid_format.date") from None


def parse_datetime(value: str) -> dt.datetime:
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise refuse("data.invalid_format", "data.invalid_format.datetime")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micro = int((match[7] or "")[:6].ljust(6, "0"))
    try:
        if match[8] is not None:
            zone = dt.UTC
        elif match[9] is not None:
            hours, minutes = int(match[10]), int(match[11])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            sign = -1 if match[9] == "-" else 1
            zone = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        else:
            dt.datetime(year, month, day, hour, minute, second, micro)  # noqa: DTZ001 - only to tell bad dates apart
            raise refuse("data.invalid_format", "data.invalid_format.datetime_zone")
        return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, or a year 1 / 9999 value pushed out by its offset
        raise refuse("data.invalid_format", "data.invalid_format.datetime") from None


def _check_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))  # fails on lone surrogates, which jsonb refuses
    except (TypeError, ValueError, RecursionError):
        raise refuse("data.invalid_format", "data.invalid_format.json") from None
    if _JSON_NUL.search(text):  # jsonb cannot hold \u0000
        raise refuse("data.invalid_format", "data.invalid_format.json")
    if size > MAX_JSON_BYTES:
        raise refuse("data.too_long", "data.too_long.bytes", limit=MAX_JSON_BYTES)
    return text
