"""PostgREST's request headers: ``Prefer``, ``Range``, ``Accept``; and the reply's ``Content-Range``."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from apprun.kernel.errors import ApiError, BadRequest

__all__ = ["Preferences", "content_range", "negotiate", "parse_prefer", "parse_range", "to_csv"]

_KNOWN = {
    "return": ("minimal", "headers-only", "representation"),
    "count": ("exact", "planned", "estimated"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "missing": ("default", "null"),
    "handling": ("lenient", "strict"),
}
_RANGE = re.compile(r"^\s*(\d{1,18})-(\d{0,18})\s*$")

JSON = "application/json"
OBJECT = "application/vnd.pgrst.object+json"
CSV = "text/csv"
Representation = Literal["json", "object", "csv"]


@dataclass
class Preferences:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def applied(self, *keys: str) -> str | None:
        """The ``Preference-Applied`` header for the preferences honoured among ``keys``."""
        parts = [f"{k}={self.values[k]}" for k in keys if k in self.values]
        return ", ".join(parts) or None


def parse_prefer(headers: list[str]) -> Preferences:
    """``Prefer`` headers (any number, comma-separated); unknown preferences are ignored unless ``handling=strict``."""
    prefs = Preferences()
    unknown: list[str] = []
    for header in headers:
        for part in header.split(","):
            item = part.strip()
            if not item:
                continue
            key, _, value = item.partition("=")
            key, value = key.strip().lower(), value.strip().lower()
            if key in _KNOWN and value in _KNOWN[key]:
                prefs.values[key] = value
            else:
                unknown.append(item)
    if unknown and prefs.get("handling") == "strict":
        raise BadRequest("data.invalid_preference", params={"preference": unknown[0][:100]})
    return prefs


def parse_range(header: str | None, unit: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` (items) as (offset, limit); None when absent."""
    if header is None:
        return None
    if unit is not None and unit.strip().lower() != "items":
        return None
    text = header.strip()
    if text.lower().startswith("items="):
        text = text[6:]
    match = _RANGE.match(text)
    if match is None:
        raise ApiError("data.invalid_range", status=416)
    start = int(match.group(1))
    if not match.group(2):
        return start, None
    end = int(match.group(2))
    if end < start:
        raise ApiError("data.invalid_range", status=416)
    return start, end - start + 1


def content_range(offset: int, rows: int, total: int | None) -> str:
    """``0-9/100``, ``0-9/*``, ``*/0``."""
    span = f"{offset}-{offset + rows - 1}" if rows else "*"
    return f"{span}/{'*' if total is None else total}"


def negotiate(accept: str | None) -> Representation:
    """What the client accepts: JSON (default), one object, or CSV; 406 otherwise."""
    if not accept:
        return "json"
    options: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            options.append((-q, index, media.lower()))
    for _, _, media in sorted(options):
        if media in (JSON, "*/*", "application/*", "application/json; charset=utf-8"):
            return "json"
        if media == OBJECT:
            return "object"
        if media in (CSV, "text/*"):
            return "csv"
    raise ApiError("data.not_acceptable", status=406, params={"accept": accept[:200]})


def to_csv(body: str) -> str:
    """A JSON array of objects as CSV (header from the first row; nested values as JSON)."""
    rows: list[dict[str, Any]] = json.loads(body)
    out = io.StringIO()
    if not rows:
        return ""
    writer = csv.writer(out, lineterminator="\n")
    columns = list(rows[0].keys())
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    return out.getvalue()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)
