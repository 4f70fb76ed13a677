"""Time helpers: every timestamp in apprun is timezone-aware UTC.

PostgreSQL returns ``timestamptz`` values as aware datetimes; SQLite stores
them as ISO-8601 text (see the SQLite adapter) and returns strings.
`to_datetime` reads either.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["isoformat", "to_datetime", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_datetime(value: object) -> dt.datetime | None:
    """A database value (datetime or ISO text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
    else:
        raise TypeError(f"not a timestamp: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def isoformat(value: dt.datetime | None) -> str | None:
    """RFC 3339 with a Z, as APIs return it."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
