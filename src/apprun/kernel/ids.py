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
import time
import uuid

__all__ = ["new_id"]

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
