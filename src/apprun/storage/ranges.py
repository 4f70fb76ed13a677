"""What a download answers to ``Range``, ``If-None-Match`` and ``?download=``: pure functions of the headers.

One byte range is served (206); several ranges are answered with the whole
object (200), which RFC 9110 allows, rather than a multipart/byteranges body
no storage client asks for; a range that starts past the end is 416.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["NOT_SATISFIABLE", "byte_range", "content_disposition", "etag_matches"]

#: What `byte_range` returns for a range that selects no byte of the object.
NOT_SATISFIABLE = (-1, -1)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/;]')


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive for a ``Range`` header, None to serve everything, `NOT_SATISFIABLE`."""
    match = _RANGE.match(header.strip().replace(" ", "")) if header else None
    # No range, several ranges, or a unit other than bytes: the whole object.
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return NOT_SATISFIABLE
        return max(size - count, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return NOT_SATISFIABLE
    return start, end


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak or strong, or ``*``)."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or f'"{etag}"' in tags


def content_disposition(requested: str, key: str) -> str:
    """``attachment`` with a file name that cannot break out of the header: ``requested``, else the key's last part.

    Control characters, quotes, backslashes, slashes and semicolons become ``_`` in the plain ``filename``;
    ``filename*`` carries the full name percent-encoded, as RFC 6266 has browsers prefer it.
    """
    name = requested or key.rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name)[:255] or "download"
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
