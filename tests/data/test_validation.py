"""Row and value validation: what a client may write, and what each driver receives.

Tables first: accepted values (field, input, bound value on PostgreSQL, on
SQLite), refused values (field, input, codes), filter values; then the
row-level behaviour (defaults, partial updates, mass assignment, unknown
fields, several problems at once, non-object bodies).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apprun.data.schema import validation, validation_checks
from apprun.data.schema.model import SYSTEM_COLUMNS, CollectionDef, FieldDef
from apprun.data.schema.validation import (
    BODY_KEY,
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_BYTES,
    MAX_REPORTED_FIELDS,
    MAX_TEXT_BYTES,
    canonical_datetime,
    coerce_filter_value,
    validate_row,
    validate_value,
)
from apprun.kernel.context import RequestContext, reset_current, set_current
from apprun.kernel.errors import BadRequest
from apprun.kernel.i18n import translator

UTC = dt.UTC
U = "0190A4B2-7C1E-7D3A-9F00-2B6C1D4E5F60"
u = U.lower()
MIB = 1024 * 1024
NIL = "00000000-0000-0000-0000-000000000000"
LONG_URL = "https://e.com/" + "a" * 2034  # 2048 characters


def fd(type_: str, **kw: Any) -> FieldDef:
    kw.setdefault("name", "f")
    return FieldDef.model_validate({"type": type_, **kw})


def aware(*args: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)  # type: ignore[misc, arg-type]


def field_problems(exc: BadRequest, name: str = "f") -> list[dict[str, Any]]:
    assert exc.code == "data.validation_failed"
    fields: dict[str, list[dict[str, Any]]] = exc.details["fields"]
    return fields[name]


def codes(exc: BadRequest) -> dict[str, list[str]]:
    return {name: [p["code"] for p in items] for name, items in exc.details["fields"].items()}


# --- accepted values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    name: str
    field: FieldDef
    value: Any
    postgres: Any
    sqlite: Any


ACCEPTED = [
    Ok("integer", fd("integer"), 42, 42, 42),
    Ok("integer zero", fd("integer"), 0, 0, 0),
    Ok("integer int64 max", fd("integer"), INT64_MAX, INT64_MAX, INT64_MAX),
    Ok("integer int64 min", fd("integer"), INT64_MIN, INT64_MIN, INT64_MIN),
    Ok("integer at min", fd("integer", min=0, max=10), 0, 0, 0),
    Ok("integer at max", fd("integer", min=0, max=10), 10, 10, 10),
    Ok("number float", fd("number"), 1.5, 1.5, 1.5),
    Ok("number from int", fd("number"), 3, 3.0, 3.0),
    Ok("number negative", fd("number", min=-2.5), -2.5, -2.5, -2.5),
    Ok("number big int", fd("number"), 10**300, 1e300, 1e300),
    Ok("boolean true", fd("boolean"), True, True, 1),
    Ok("boolean false", fd("boolean"), False, False, 0),
    Ok("text", fd("text"), "hello", "hello", "hello"),
    Ok("text empty", fd("text"), "", "", ""),
    Ok("text unicode", fd("text"), "你好 🌍", "你好 🌍", "你好 🌍"),
    Ok("text at max_length (characters, not bytes)", fd("text", max_length=3), "你好🌍", "你好🌍", "你好🌍"),
    Ok("text at min_length", fd("text", min_length=2), "ab", "ab", "ab"),
    Ok("text matches pattern", fd("text", pattern=r"[a-z]+-[0-9]+"), "abc-12", "abc-12", "abc-12"),
    Ok("text exactly 1 MiB", fd("text"), "a" * MAX_TEXT_BYTES, "a" * MIB, "a" * MIB),
    Ok("email", fd("email"), "ann@example.com", "ann@example.com", "ann@example.com"),
    Ok("email domain lower-cased", fd("email"), "Ann.Lee@Example.COM", "Ann.Lee@example.com", "Ann.Lee@example.com"),
    Ok("email international domain", fd("email"), "a@münchen.de", "a@münchen.de", "a@münchen.de"),
    Ok(
        "url https",
        fd("url"),
        "https://example.com/a?b=c#d",
        "https://example.com/a?b=c#d",
        "https://example.com/a?b=c#d",
    ),
    Ok("url http with port", fd("url"), "http://localhost:8080/", "http://localhost:8080/", "http://localhost:8080/"),
    Ok("url ipv6", fd("url"), "http://[::1]/x", "http://[::1]/x", "http://[::1]/x"),
    Ok("url at 2048", fd("url"), LONG_URL, LONG_URL, LONG_URL),
    Ok("uuid canonicalized", fd("uuid"), U, u, u),
    Ok("uuid nil", fd("uuid"), NIL, NIL, NIL),
    Ok("relation canonicalized", fd("relation", collection="authors"), U, u, u),
    Ok("enum", fd("enum", values=["draft", "published"]), "draft", "draft", "draft"),
    Ok("date", fd("date"), "2024-02-29", dt.date(2024, 2, 29), "2024-02-29"),
    Ok("date early year", fd("date"), "0099-01-01", dt.date(99, 1, 1), "0099-01-01"),
    Ok("datetime Z", fd("datetime"), "2024-05-01T12:00:00Z", aware(2024, 5, 1, 12), "2024-05-01T12:00:00.000000Z"),
    Ok(
        "datetime lower z and t",
        fd("datetime"),
        "2024-05-01t12:00:00z",
        aware(2024, 5, 1, 12),
        "2024-05-01T12:00:00.000000Z",
    ),
    Ok("datetime space", fd("datetime"), "2024-05-01 12:00:00Z", aware(2024, 5, 1, 12), "2024-05-01T12:00:00.000000Z"),
    Ok(
        "datetime offset to UTC",
        fd("datetime"),
        "2024-05-01T20:30:00+08:00",
        aware(2024, 5, 1, 12, 30),
        "2024-05-01T12:30:00.000000Z",
    ),
    Ok(
        "datetime negative offset crosses a day",
        fd("datetime"),
        "2024-12-31T23:00:00-05:00",
        aware(2025, 1, 1, 4),
        "2025-01-01T04:00:00.000000Z",
    ),
    Ok(
        "datetime -00:00 is UTC",
        fd("datetime"),
        "2024-05-01T12:00:00-00:00",
        aware(2024, 5, 1, 12),
        "2024-05-01T12:00:00.000000Z",
    ),
    Ok(
        "datetime milliseconds padded",
        fd("datetime"),
        "2024-05-01T12:00:00.5Z",
        aware(2024, 5, 1, 12, 0, 0, 500000),
        "2024-05-01T12:00:00.500000Z",
    ),
    Ok(
        "datetime microseconds kept",
        fd("datetime"),
        "2024-05-01T12:00:00.000001Z",
        aware(2024, 5, 1, 12, 0, 0, 1),
        "2024-05-01T12:00:00.000001Z",
    ),
    Ok(
        "datetime nanoseconds truncated",
        fd("datetime"),
        "2024-05-01T12:00:00.123456789Z",
        aware(2024, 5, 1, 12, 0, 0, 123456),
        "2024-05-01T12:00:00.123456Z",
    ),
    Ok("datetime year 1", fd("datetime"), "0001-01-01T00:00:00Z", aware(1, 1, 1), "0001-01-01T00:00:00.000000Z"),
    Ok("json object", fd("json"), {"a": [1, 2.5, True, None]}, '{"a":[1,2.5,true,null]}', '{"a":[1,2.5,true,null]}'),
    Ok("json string", fd("json"), "x", '"x"', '"x"'),
    Ok("json number", fd("json"), 7, "7", "7"),
    Ok("json false", fd("json"), False, "false", "false"),
    Ok("json unicode kept", fd("json"), ["é"], '["é"]', '["é"]'),
    Ok("json text that spells \\u0000", fd("json"), "\\u0000", '"\\\\u0000"', '"\\\\u0000"'),
    Ok("null for an optional field", fd("text"), None, None, None),
    Ok("null for an optional json field is SQL NULL", fd("json"), None, None, None),
    Ok("hidden field is writable", fd("text", hidden=True), "secret", "secret", "secret"),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_accepted_values(case: Ok) -> None:
    pg = validate_value(case.field, case.value, dialect="postgres")
    lite = validate_value(case.field, case.value, dialect="sqlite")
    assert pg == case.postgres
    assert type(pg) is type(case.postgres)
    assert lite == case.sqlite
    assert type(lite) is type(case.sqlite)
    if isinstance(pg, dt.datetime):
        assert pg.utcoffset() == dt.timedelta(0)


# --- refused values -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    name: str
    field: FieldDef
    value: Any
    codes: list[str]
    #: The message must contain this (English).
    says: str = ""


REFUSED = [
    Refused("integer from string", fd("integer"), "1", ["data.invalid_type"], "JSON integer"),
    Refused("integer from bool", fd("integer"), True, ["data.invalid_type"]),
    Refused("integer from false", fd("integer"), False, ["data.invalid_type"]),
    Refused("integer from integral float", fd("integer"), 3.0, ["data.invalid_type"]),
    Refused("integer from fraction", fd("integer"), 3.5, ["data.invalid_type"]),
    Refused("integer above int64", fd("integer"), INT64_MAX + 1, ["data.too_large"], str(INT64_MAX)),
    Refused("integer below int64", fd("integer"), INT64_MIN - 1, ["data.too_small"], str(INT64_MIN)),
    Refused("integer huge", fd("integer"), 10**100, ["data.too_large"]),
    Refused("integer below min", fd("integer", min=0), -1, ["data.too_small"], "at least 0."),
    Refused("integer above max", fd("integer", max=10), 11, ["data.too_large"], "at most 10."),
    Refused("integer list", fd("integer"), [1], ["data.invalid_type"]),
    Refused("number from bool", fd("number"), True, ["data.invalid_type"]),
    Refused("number from string", fd("number"), "1.5", ["data.invalid_type"]),
    Refused("number NaN", fd("number"), float("nan"), ["data.invalid_type"], "finite"),
    Refused("number inf", fd("number"), float("inf"), ["data.invalid_type"], "finite"),
    Refused("number -inf", fd("number"), float("-inf"), ["data.invalid_type"], "finite"),
    Refused("number int beyond a double", fd("number"), 10**400, ["data.too_large"]),
    Refused("number negative int beyond a double", fd("number"), -(10**400), ["data.too_small"]),
    Refused("number below min", fd("number", min=0.5), 0.25, ["data.too_small"], "at least 0.5"),
    Refused("number above max", fd("number", max=1), 1.0001, ["data.too_large"], "at most 1."),
    Refused("boolean from 1", fd("boolean"), 1, ["data.invalid_type"], "JSON boolean"),
    Refused("boolean from string", fd("boolean"), "true", ["data.invalid_type"]),
    Refused("text from number", fd("text"), 5, ["data.invalid_type"], "JSON string"),
    Refused("text from object", fd("text"), {"a": 1}, ["data.invalid_type"]),
    Refused("text too long", fd("text", max_length=3), "abcd", ["data.too_long"], "at most 3 characters"),
    Refused("text too short", fd("text", min_length=2), "a", ["data.too_short"], "at least 2 characters"),
    Refused("text pattern", fd("text", pattern=r"[a-z]+"), "abc1", ["data.pattern_mismatch"], "[a-z]+"),
    Refused("text pattern is a full match", fd("text", pattern=r"[a-z]"), "ab", ["data.pattern_mismatch"]),
    Refused(
        "text too short and off pattern",
        fd("text", min_length=5, pattern=r"[a-z]+"),
        "A",
        ["data.too_short", "data.pattern_mismatch"],
    ),
    Refused(
        "text above 1 MiB", fd("text"), "a" * (MAX_TEXT_BYTES + 1), ["data.too_long"], f"at most {MAX_TEXT_BYTES} bytes"
    ),
    Refused(
        "text 1 MiB of characters is more bytes",
        fd("text"),
        "é" * (MAX_TEXT_BYTES // 2 + 1),
        ["data.too_long"],
        "bytes",
    ),
    Refused(
        "text huge with max_length",
        fd("text", max_length=10),
        "a" * (5 * MIB),
        ["data.too_long"],
        "at most 10 characters",
    ),
    Refused("text NUL", fd("text"), "a\x00b", ["data.invalid_format"], "NUL"),
    Refused("text lone surrogate", fd("text"), "a\ud800b", ["data.invalid_format"], "Unicode"),
    Refused("email", fd("email"), "not-an-email", ["data.invalid_format"], "email address"),
    Refused("email without a dot in the domain", fd("email"), "a@localhost", ["data.invalid_format"]),
    Refused("email number", fd("email"), 1, ["data.invalid_type"]),
    Refused("email too long for max_length after normalizing", fd("email", max_length=5), "a@b.co", ["data.too_long"]),
    Refused("url relative", fd("url"), "/path", ["data.invalid_format"], "http or https"),
    Refused("url javascript", fd("url"), "javascript:alert(1)", ["data.invalid_format"]),
    Refused("url ftp", fd("url"), "ftp://example.com/", ["data.invalid_format"]),
    Refused("url without host", fd("url"), "http:///path", ["data.invalid_format"]),
    Refused("url backslashes", fd("url"), "http:\\\\example.com", ["data.invalid_format"]),
    Refused("url with a space", fd("url"), "http://exa mple.com/", ["data.invalid_format"]),
    Refused("url with a newline", fd("url"), "http://example.com/\n", ["data.invalid_format"]),
    Refused("url bad port", fd("url"), "http://example.com:99999/", ["data.invalid_format"]),
    Refused("url bad ipv6", fd("url"), "http://[::1/", ["data.invalid_format"]),
    Refused("url too long", fd("url"), LONG_URL + "a", ["data.too_long"], "2048"),
    Refused("uuid garbage", fd("uuid"), "not-a-uuid", ["data.invalid_format"], "UUID"),
    Refused("uuid without hyphens", fd("uuid"), U.replace("-", ""), ["data.invalid_format"]),
    Refused("uuid with braces", fd("uuid"), "{" + U + "}", ["data.invalid_format"]),
    Refused("uuid urn", fd("uuid"), "urn:uuid:" + U, ["data.invalid_format"]),
    Refused("uuid number", fd("uuid"), 5, ["data.invalid_type"]),
    Refused("relation garbage", fd("relation", collection="authors"), "42", ["data.invalid_format"], "UUID"),
    Refused("relation number", fd("relation", collection="authors"), 42, ["data.invalid_type"]),
    Refused("relation object", fd("relation", collection="authors"), {"id": U}, ["data.invalid_type"]),
    Refused(
        "enum unknown",
        fd("enum", values=["draft", "published"]),
        "deleted",
        ["data.invalid_choice"],
        "draft, published",
    ),
    Refused("enum is case-sensitive", fd("enum", values=["draft"]), "Draft", ["data.invalid_choice"]),
    Refused("enum number", fd("enum", values=["draft"]), 1, ["data.invalid_type"]),
    Refused("date impossible", fd("date"), "2023-02-29", ["data.invalid_format"], "YYYY-MM-DD"),
    Refused("date month 13", fd("date"), "2024-13-01", ["data.invalid_format"]),
    Refused("date year 0", fd("date"), "0000-01-01", ["data.invalid_format"]),
    Refused("date with time", fd("date"), "2024-05-01T00:00:00Z", ["data.invalid_format"]),
    Refused("date short form", fd("date"), "2024-5-1", ["data.invalid_format"]),
    Refused("date non-ASCII digits", fd("date"), "٢٠٢٤-05-01", ["data.invalid_format"]),
    Refused("date number", fd("date"), 20240501, ["data.invalid_type"]),
    Refused("datetime naive", fd("datetime"), "2024-05-01T12:00:00", ["data.invalid_format"], "time zone"),
    Refused(
        "datetime naive with fraction", fd("datetime"), "2024-05-01T12:00:00.123", ["data.invalid_format"], "time zone"
    ),
    Refused("datetime date only", fd("datetime"), "2024-05-01", ["data.invalid_format"], "RFC 3339"),
    Refused("datetime without seconds", fd("datetime"), "2024-05-01T12:00Z", ["data.invalid_format"]),
    Refused("datetime impossible day", fd("datetime"), "2024-02-30T12:00:00Z", ["data.invalid_format"], "RFC 3339"),
    Refused(
        "datetime impossible naive day", fd("datetime"), "2024-02-30T12:00:00", ["data.invalid_format"], "RFC 3339"
    ),
    Refused("datetime hour 24", fd("datetime"), "2024-05-01T24:00:00Z", ["data.invalid_format"]),
    Refused("datetime leap second", fd("datetime"), "2016-12-31T23:59:60Z", ["data.invalid_format"]),
    Refused("datetime offset hours 24", fd("datetime"), "2024-05-01T12:00:00+24:00", ["data.invalid_format"]),
    Refused("datetime offset without colon", fd("datetime"), "2024-05-01T12:00:00+0800", ["data.invalid_format"]),
    Refused("datetime out of range after UTC", fd("datetime"), "0001-01-01T00:00:00+01:00", ["data.invalid_format"]),
    Refused("datetime now from a client", fd("datetime"), "now", ["data.invalid_format"]),
    Refused("datetime epoch number", fd("datetime"), 1714564800, ["data.invalid_type"]),
    Refused("json NaN", fd("json"), {"a": float("nan")}, ["data.invalid_format"], "finite"),
    Refused("json inf", fd("json"), [float("inf")], ["data.invalid_format"]),
    Refused("json NUL in a value", fd("json"), {"a": "x\x00"}, ["data.invalid_format"], "NUL"),
    Refused("json NUL in a key", fd("json"), {"\x00": 1}, ["data.invalid_format"]),
    Refused("json NUL after an escaped backslash", fd("json"), "\\\x00", ["data.invalid_format"]),
    Refused("json lone surrogate", fd("json"), ["\udc00"], ["data.invalid_format"]),
    Refused("json above 1 MiB", fd("json"), {"a": "x" * MAX_JSON_BYTES}, ["data.too_long"], "bytes"),
    Refused("json not JSON", fd("json"), {1, 2}, ["data.invalid_format"]),
    Refused("null for a required field", fd("text", required=True), None, ["data.required"], "f is required."),
    Refused(
        "many-to-many",
        fd("relation", collection="tags", many=True, through="post_tags"),
        [U],
        ["data.read_only_field"],
        "post_tags",
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_refused_values(case: Refused, dialect: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_value(case.field, case.value, dialect=dialect, locale="en")
    problems = field_problems(caught.value)
    assert [p["code"] for p in problems] == case.codes
    assert case.says in problems[0]["message"]
    for problem in problems:
        assert problem["message"]
        assert not problem["message"].startswith("data.")
        assert "{" not in problem["message"], "a placeholder was left unfilled"


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(BadRequest) as caught:
        validate_value(fd("json"), deep, dialect="postgres")
    assert [p["code"] for p in field_problems(caught.value)] == ["data.invalid_format"]


def test_messages_follow_the_locale_and_carry_params() -> None:
    field = fd("integer", name="views", min=0)
    with pytest.raises(BadRequest) as caught:
        validate_value(field, -1, dialect="sqlite", locale="zh_CN")
    [problem] = field_problems(caught.value, "views")
    assert problem == {"code": "data.too_small", "message": "views 不能小于 0。", "params": {"limit": 0}}

    # Without an explicit locale, the current request's is used.
    token = set_current(RequestContext(request_id="r", locale="zh_CN"))
    try:
        with pytest.raises(BadRequest) as caught:
            validate_value(field, "x", dialect="sqlite")
    finally:
        reset_current(token)
    assert field_problems(caught.value, "views")[0]["message"] == "views 必须是 JSON integer 类型。"

    with pytest.raises(BadRequest) as caught:
        validate_value(field, "x", dialect="sqlite")
    assert field_problems(caught.value, "views")[0]["message"] == "views must be a JSON integer."


def test_every_message_id_used_has_english_and_chinese_text() -> None:
    source = "".join(Path(m.__file__).read_text(encoding="utf-8") for m in (validation, validation_checks))
    ids = set(re.findall(r'"(data\.[a-z_]+(?:\.[a-z_]+)?)"', source))
    assert len(ids) > 20
    tr = translator()
    for locale in ("en", "zh_CN"):
        missing = sorted(i for i in ids if i not in tr.catalog(locale))
        assert missing == [], f"{locale} lacks {missing}"


# --- canonical datetime ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (aware(2024, 5, 1, 12), "2024-05-01T12:00:00.000000Z"),
        (aware(2024, 5, 1, 12, 0, 0, 1), "2024-05-01T12:00:00.000001Z"),
        (aware(2024, 5, 1, 12, 0, 0, 999999), "2024-05-01T12:00:00.999999Z"),
        (aware(2024, 5, 1, 20, 30, tz=dt.timezone(dt.timedelta(hours=8))), "2024-05-01T12:30:00.000000Z"),
        (aware(2024, 1, 1, 0, 30, tz=dt.timezone(dt.timedelta(hours=1))), "2023-12-31T23:30:00.000000Z"),
        (aware(999, 1, 2, 3, 4, 5), "0999-01-02T03:04:05.000000Z"),
        (aware(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_canonical_datetime(value: dt.datetime, text: str) -> None:
    assert canonical_datetime(value) == text
    assert len(text) == 27
    # Round trip: the stored text reads back as the same instant, and re-validates to itself.
    assert dt.datetime.fromisoformat(text.replace("Z", "+00:00")) == value
    assert validate_value(fd("datetime"), text, dialect="sqlite") == text
    assert validate_value(fd("datetime"), text, dialect="postgres") == value


def test_canonical_datetime_refuses_naive() -> None:
    with pytest.raises(ValueError, match="aware"):
        canonical_datetime(dt.datetime(2024, 5, 1))  # noqa: DTZ001 - the point of the test


def test_canonical_text_orders_like_time() -> None:
    instants = [
        aware(2024, 5, 1, 12, 0, 0, 1),
        aware(2024, 5, 1, 12),
        aware(999, 1, 1),
        aware(2024, 5, 1, 11, 59, 59, 999999),
        aware(2024, 5, 1, 13, tz=dt.timezone(dt.timedelta(hours=2))),
    ]
    assert sorted(instants, key=canonical_datetime) == sorted(instants)


# --- filter values --------------------------------------------------------------------------------------------------


FILTER_OK = [
    ("integer", fd("integer"), "10", 10, 10),
    ("integer negative", fd("integer"), "-10", -10, -10),
    ("integer plus", fd("integer"), "+7", 7, 7),
    ("integer ignores min", fd("integer", min=0), "-5", -5, -5),
    ("number", fd("number"), "1.5", 1.5, 1.5),
    ("number integral", fd("number"), "2", 2.0, 2.0),
    ("number exponent", fd("number"), "1e3", 1000.0, 1000.0),
    ("boolean true", fd("boolean"), "true", True, 1),
    ("boolean FALSE", fd("boolean"), "FALSE", False, 0),
    ("date", fd("date"), "2024-05-01", dt.date(2024, 5, 1), "2024-05-01"),
    ("datetime", fd("datetime"), "2024-05-01T14:00:00+02:00", aware(2024, 5, 1, 12), "2024-05-01T12:00:00.000000Z"),
    ("uuid", fd("uuid"), U, u, u),
    ("relation", fd("relation", collection="authors"), U, u, u),
    ("email normalized", fd("email"), "Ann@Example.COM", "Ann@example.com", "Ann@example.com"),
    ("email partial left alone", fd("email"), "Ann@", "Ann@", "Ann@"),
    ("text unchanged", fd("text"), " a,b ", " a,b ", " a,b "),
    ("text ignores max_length", fd("text", max_length=1), "abc", "abc", "abc"),
    ("enum not a value", fd("enum", values=["a"]), "zzz", "zzz", "zzz"),
    ("url anything", fd("url"), "not a url", "not a url", "not a url"),
    ("json unchanged", fd("json"), '{"a":1}', '{"a":1}', '{"a":1}'),
]


@pytest.mark.parametrize(("name", "field", "raw", "postgres", "sqlite"), FILTER_OK, ids=[c[0] for c in FILTER_OK])
def test_filter_values(name: str, field: FieldDef, raw: str, postgres: Any, sqlite: Any) -> None:
    pg = coerce_filter_value(field, raw, dialect="postgres")
    lite = coerce_filter_value(field, raw, dialect="sqlite")
    assert (pg, type(pg)) == (postgres, type(postgres))
    assert (lite, type(lite)) == (sqlite, type(sqlite))


FILTER_REFUSED = [
    ("integer fraction", fd("integer"), "10.0", "integer"),
    ("integer word", fd("integer"), "ten", "integer"),
    ("integer underscores", fd("integer"), "1_000", "integer"),
    ("integer spaces", fd("integer"), " 1", "integer"),
    ("integer non-ASCII digits", fd("integer"), "١٢", "integer"),
    ("integer above int64", fd("integer"), str(INT64_MAX + 1), "integer"),
    ("integer enormous", fd("integer"), "9" * 5000, "integer"),
    ("number nan", fd("number"), "nan", "finite number"),
    ("number inf", fd("number"), "inf", "finite number"),
    ("number overflow", fd("number"), "1e999", "finite number"),
    ("number underscores", fd("number"), "1_0", "finite number"),
    ("boolean 1", fd("boolean"), "1", "true or false"),
    ("boolean yes", fd("boolean"), "yes", "true or false"),
    ("date", fd("date"), "2024-02-30", "date (YYYY-MM-DD)"),
    ("datetime naive", fd("datetime"), "2024-05-01T12:00:00", "RFC 3339 date-time with a time zone"),
    ("datetime date only", fd("datetime"), "2024-05-01", "RFC 3339 date-time with a time zone"),
    ("uuid", fd("uuid"), "42", "UUID"),
    ("relation", fd("relation", collection="authors"), "42", "UUID"),
    ("NUL in text", fd("text"), "a\x00", "valid Unicode text without NUL characters"),
    ("NUL in an integer", fd("integer"), "1\x00", "valid Unicode text without NUL characters"),
    ("lone surrogate", fd("text"), "a\udc80", "valid Unicode text without NUL characters"),
]


@pytest.mark.parametrize(("name", "field", "raw", "expected"), FILTER_REFUSED, ids=[c[0] for c in FILTER_REFUSED])
@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_filter_values_refused(name: str, field: FieldDef, raw: str, expected: str, dialect: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        coerce_filter_value(field, raw, dialect=dialect)
    assert caught.value.code == "data.invalid_filter_value"
    details = caught.value.details
    assert details["field"] == "f"
    assert details["expected"] == expected
    assert details["value"] == (raw if len(raw) <= 200 else raw[:200] + "…")
    assert caught.value.params == details


# --- rows -----------------------------------------------------------------------------------------------------------


POSTS = CollectionDef.model_validate(
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": True, "max_length": 20},
            {"name": "body", "type": "text"},
            {"name": "status", "type": "enum", "values": ["draft", "published"], "default": "draft"},
            {"name": "views", "type": "integer", "min": 0, "default": 0},
            {"name": "published_at", "type": "datetime"},
            {"name": "author", "type": "relation", "collection": "authors", "on_delete": "set_null"},
            {"name": "tags", "type": "relation", "collection": "tags", "many": True, "through": "post_tags"},
            {"name": "meta", "type": "json"},
            {"name": "secret_note", "type": "text", "hidden": True},
        ],
    }
)


def test_insert_applies_defaults_and_orders_columns_like_the_collection() -> None:
    body = {"meta": {"k": 1}, "author": U, "title": "Hello", "published_at": "2024-05-01T14:00:00+02:00"}
    assert list(validate_row(POSTS, body, partial=False, dialect="sqlite").items()) == [
        ("title", "Hello"),
        ("status", "draft"),
        ("views", 0),
        ("published_at", "2024-05-01T12:00:00.000000Z"),
        ("author", u),
        ("meta", '{"k":1}'),
    ]
    assert validate_row(POSTS, body, partial=False, dialect="postgres") == {
        "title": "Hello",
        "status": "draft",
        "views": 0,
        "published_at": aware(2024, 5, 1, 12),
        "author": u,
        "meta": '{"k":1}',
    }


@dataclass(frozen=True)
class RowCase:
    name: str
    body: Any
    partial: bool
    #: Either the expected SQLite result or the expected {field: [codes]}.
    result: dict[str, Any] | None = None
    problems: dict[str, list[str]] | None = None


ROWS = [
    RowCase(
        "explicit null beats the default",
        {"title": "t", "status": None},
        False,
        result={"title": "t", "status": None, "views": 0},
    ),
    RowCase(
        "explicit value beats the default",
        {"title": "t", "views": 5},
        False,
        result={"title": "t", "status": "draft", "views": 5},
    ),
    RowCase(
        "hidden field written",
        {"title": "t", "secret_note": "s"},
        False,
        result={"title": "t", "status": "draft", "views": 0, "secret_note": "s"},
    ),
    RowCase("missing required", {"body": "b"}, False, problems={"title": ["data.required"]}),
    RowCase("null for required", {"title": None}, False, problems={"title": ["data.required"]}),
    RowCase("empty insert", {}, False, problems={"title": ["data.required"]}),
    RowCase("partial: only what is given, no defaults", {"views": 3}, True, result={"views": 3}),
    RowCase("partial: required may be absent", {"body": None}, True, result={"body": None}),
    RowCase("partial: empty", {}, True, result={}),
    RowCase("partial: null for required", {"title": None}, True, problems={"title": ["data.required"]}),
    RowCase("partial: values still checked", {"views": -1}, True, problems={"views": ["data.too_small"]}),
    RowCase("many-to-many", {"title": "t", "tags": [U]}, False, problems={"tags": ["data.read_only_field"]}),
    RowCase("unknown field", {"title": "t", "nope": 1}, False, problems={"nope": ["data.unknown_field"]}),
    RowCase(
        "non-identifier key", {"title": "t", "ti tle; drop": 1}, True, problems={"ti tle; drop": ["data.unknown_field"]}
    ),
    *(
        RowCase(
            f"mass assignment of {column}",
            {"title": "t", column: U},
            partial,
            problems={column: ["data.read_only_field"]},
        )
        for column in SYSTEM_COLUMNS
        for partial in (False, True)
    ),
    RowCase(
        "mass assignment of null system column",
        {"title": "t", "tenant_id": None},
        False,
        problems={"tenant_id": ["data.read_only_field"]},
    ),
    RowCase(
        "several problems at once",
        {
            "title": "x" * 21,
            "views": True,
            "id": U,
            "tenant_id": U,
            "titel": "t",
            "published_at": "2024-05-01T12:00:00",
            "status": "gone",
        },
        False,
        problems={
            "title": ["data.too_long"],
            "views": ["data.invalid_type"],
            "id": ["data.read_only_field"],
            "tenant_id": ["data.read_only_field"],
            "titel": ["data.unknown_field"],
            "published_at": ["data.invalid_format"],
            "status": ["data.invalid_choice"],
        },
    ),
    RowCase("body is a list", [{"title": "t"}], False, problems={BODY_KEY: ["data.invalid_body"]}),
    RowCase("body is a string", "title=t", False, problems={BODY_KEY: ["data.invalid_body"]}),
    RowCase("body is null", None, True, problems={BODY_KEY: ["data.invalid_body"]}),
    RowCase("body is a number", 1, True, problems={BODY_KEY: ["data.invalid_body"]}),
]


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.name)
def test_rows(case: RowCase) -> None:
    if case.result is not None:
        assert validate_row(POSTS, case.body, partial=case.partial, dialect="sqlite") == case.result
        return
    for dialect in ("sqlite", "postgres"):
        with pytest.raises(BadRequest) as caught:
            validate_row(POSTS, case.body, partial=case.partial, dialect=dialect)
        assert caught.value.code == "data.validation_failed"
        assert caught.value.status == 400
        assert codes(caught.value) == case.problems


@pytest.mark.parametrize(
    ("body", "kind"), [([], "array"), ("x", "string"), (None, "null"), (True, "boolean"), (1.5, "number")]
)
def test_non_object_body_names_what_it_got(body: Any, kind: str) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_row(POSTS, body, partial=False, dialect="sqlite", locale="en")
    [problem] = caught.value.details["fields"][BODY_KEY]
    assert problem["message"] == f"The body must be a JSON object, not {kind}."


@pytest.mark.parametrize(
    ("key", "suggestions"),
    [
        ("titel", ["title"]),
        ("Title", ["title"]),
        ("view", ["views"]),
        ("statuss", ["status"]),
        ("publishedat", ["published_at"]),
        ("zzzzzz", []),
        ("secret", []),  # a hidden field is never suggested
        ("secret_not", []),
        ("tag", []),  # nor a many-to-many one
        ("x" * 10_000, []),
    ],
)
def test_unknown_field_hints(key: str, suggestions: list[str]) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_row(POSTS, {"title": "t", key: 1}, partial=False, dialect="sqlite", locale="en")
    fields = caught.value.details["fields"]
    [(echoed, [problem])] = fields.items()
    assert echoed == (key if len(key) <= 64 else key[:64] + "…")
    assert problem["code"] == "data.unknown_field"
    assert problem["message"] == f"{echoed} is not a field of posts."
    if suggestions:
        assert problem["suggestions"] == suggestions
        assert problem["hint"] == f"Did you mean {', '.join(suggestions)}?"
    else:
        assert "hint" not in problem
        assert "suggestions" not in problem


def test_report_is_capped() -> None:
    body = {f"unknown_{i}": i for i in range(MAX_REPORTED_FIELDS * 3)}
    with pytest.raises(BadRequest) as caught:
        validate_row(POSTS, body, partial=True, dialect="sqlite")
    assert len(caught.value.details["fields"]) == MAX_REPORTED_FIELDS
    assert caught.value.details["truncated"] is True


def test_cap_holds_with_missing_required_fields_too() -> None:
    many_required = CollectionDef.model_validate(
        {"name": "wide", "fields": [{"name": f"f{i}", "type": "text", "required": True} for i in range(150)]}
    )
    with pytest.raises(BadRequest) as caught:
        validate_row(many_required, {}, partial=False, dialect="sqlite")
    assert list(caught.value.details["fields"]) == [f"f{i}" for i in range(MAX_REPORTED_FIELDS)]
    assert caught.value.details["truncated"] is True
    assert caught.value.params == {"count": 150}


def test_owner_field_is_guarded_and_left_to_the_caller() -> None:
    docs = CollectionDef.model_validate(
        {
            "name": "docs",
            "owner_field": "owner",
            "fields": [{"name": "owner", "type": "uuid", "required": True}, {"name": "title", "type": "text"}],
        }
    )
    # The caller fills the owner itself, so its absence is not a problem...
    assert validate_row(docs, {"title": "t"}, partial=False, dialect="postgres") == {"title": "t"}
    # ...and a client naming it is refused, on insert and on update.
    for partial in (False, True):
        with pytest.raises(BadRequest) as caught:
            validate_row(docs, {"title": "t", "owner": U}, partial=partial, dialect="postgres")
        assert codes(caught.value) == {"owner": ["data.read_only_field"]}


# --- defaults -------------------------------------------------------------------------------------------------------


def one_field(**kw: Any) -> CollectionDef:
    return CollectionDef.model_validate({"name": "things", "fields": [{"name": "f", **kw}]})


DEFAULTS = [
    ("integer", {"type": "integer", "default": 5}, 5, 5),
    ("boolean", {"type": "boolean", "default": True}, True, 1),
    ("json object", {"type": "json", "default": {"a": []}}, '{"a":[]}', '{"a":[]}'),
    ("uuid canonicalized", {"type": "uuid", "default": U}, u, u),
    ("date text", {"type": "date", "default": "2024-05-01"}, dt.date(2024, 5, 1), "2024-05-01"),
    ("date from YAML", {"type": "date", "default": dt.date(2024, 5, 1)}, dt.date(2024, 5, 1), "2024-05-01"),
    (
        "datetime literal",
        {"type": "datetime", "default": "2024-05-01T12:00:00+00:00"},
        aware(2024, 5, 1, 12),
        "2024-05-01T12:00:00.000000Z",
    ),
    (
        "datetime from YAML",
        {"type": "datetime", "default": aware(2024, 5, 1, 12)},
        aware(2024, 5, 1, 12),
        "2024-05-01T12:00:00.000000Z",
    ),
    ("text 'now' is just text", {"type": "text", "default": "now"}, "now", "now"),
]


@pytest.mark.parametrize(("name", "field", "postgres", "sqlite"), DEFAULTS, ids=[c[0] for c in DEFAULTS])
def test_defaults(name: str, field: dict[str, Any], postgres: Any, sqlite: Any) -> None:
    collection = one_field(**field)
    assert validate_row(collection, {}, partial=False, dialect="postgres") == {"f": postgres}
    assert validate_row(collection, {}, partial=False, dialect="sqlite") == {"f": sqlite}
    assert validate_row(collection, {}, partial=True, dialect="sqlite") == {}


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ({"type": "enum", "values": ["a"], "default": "b"}, "data.invalid_choice"),
        ({"type": "integer", "min": 1, "default": 0}, "data.too_small"),
        ({"type": "datetime", "default": "2024-05-01T12:00:00"}, "data.invalid_format"),
        ({"type": "datetime", "default": "NOW"}, "data.invalid_format"),
        ({"type": "date", "default": "now"}, "data.invalid_format"),
        ({"type": "integer", "default": "1"}, "data.invalid_type"),
    ],
)
def test_broken_defaults_are_reported(field: dict[str, Any], code: str) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_row(one_field(**field), {}, partial=False, dialect="sqlite")
    assert codes(caught.value) == {"f": [code]}


def test_datetime_default_now_is_the_insert_time_once_per_row() -> None:
    collection = CollectionDef.model_validate(
        {
            "name": "things",
            "fields": [
                {"name": "a", "type": "datetime", "default": "now"},
                {"name": "b", "type": "datetime", "default": "now"},
            ],
        }
    )
    before = dt.datetime.now(UTC)
    pg = validate_row(collection, {}, partial=False, dialect="postgres")
    after = dt.datetime.now(UTC)
    assert before <= pg["a"] <= after
    assert pg["a"] == pg["b"]
    assert pg["a"].tzinfo is not None
    lite = validate_row(collection, {"b": "2024-05-01T12:00:00Z"}, partial=False, dialect="sqlite")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", lite["a"])
    assert lite["b"] == "2024-05-01T12:00:00.000000Z"
    # Not on updates, and never from a client.
    assert validate_row(collection, {}, partial=True, dialect="sqlite") == {}
    with pytest.raises(BadRequest):
        validate_row(collection, {"a": "now"}, partial=False, dialect="sqlite")
