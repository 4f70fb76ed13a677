"""Identifiers: time-ordered UUIDs (version 7, RFC 9562).

Sortable by creation time, so primary keys index well and event ids sort in
the order events happened; 74 random bits make them unguessable enough to
appear in URLs (never as secrets: tokens use `secrets`). Within a process
they are strictly increasing (RFC 9562 §6.2, method 2: an id made in the same
millisecond as the previous one is the previous one plus one), so rows
inserted together keep their order when sorted by id.
"""

from __future__ import annotations

import os
import re
import time
import uuid

__all__ = ["UUID_TEXT", "canonical_uuid", "new_id"]

#: A UUID as text: the 8-4-4-4-12 hexadecimal form, any version (the nil UUID too), either case.
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_last = [0]


def new_id() -> str:
    """A new UUIDv7 as its canonical 36-character string."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80  # 48-bit Unix milliseconds
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFFFFFFFFFFFFFF  # 62 random bits
    if value <= _last[0]:
        # Same millisecond (or a clock step back): one more than the last, still random-looking.
        value = _last[0] + 1
    _last[0] = value
    return str(uuid.UUID(int=value))


def canonical_uuid(text: str) -> str | None:
    """``text`` as a UUID in its canonical lower case, or None when it is not one (`UUID_TEXT`)."""
    return text.lower() if UUID_TEXT.fullmatch(text) else None
