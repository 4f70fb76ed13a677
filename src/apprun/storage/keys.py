"""Bucket names and object keys: the one place a name from a client becomes a storage key.

Every key goes through `object_key` before it reaches a backend or a query,
as Supabase Storage resolves every key through one secure-path function.
A key is refused (400 ``storage.invalid_key``), never repaired, when it could
name something else than the object it spells on some backend: ``..`` or
``.`` segments, empty segments (``a//b`` and ``a/b`` would be one file on
disk), a leading ``/``, backslashes (a path separator on Windows and for
some S3 tools), control characters and NUL (truncate C strings, forge log
lines), or more than 1,024 bytes of UTF-8 (S3's limit). Percent-encoding is
undone by the HTTP layer before this check, so ``%2e%2e/`` arrives as
``../`` and is refused here.
"""

from __future__ import annotations

import re
import unicodedata

from apprun.kernel.errors import BadRequest

__all__ = ["MAX_KEY_BYTES", "MAX_SEGMENT_BYTES", "RESERVED", "bucket_name", "folder_prefix", "object_key"]

MAX_KEY_BYTES = 1024
#: A segment is a file or directory name on the local backend, where most filesystems stop at 255 bytes.
MAX_SEGMENT_BYTES = 255
#: Bucket names: what Supabase Storage and S3 accept, and what an RBAC object (``bucket:<name>``) may hold.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


#: Names the routes take as a path segment after ``/object/`` (``/object/public/...``): a bucket of that name
#: could not be reached.
RESERVED = frozenset({"public", "authenticated", "info", "list", "list-v2", "move", "copy", "sign", "upload", "render"})


def bucket_name(name: str) -> str:
    """``name`` when it is a valid bucket name; 400 ``storage.invalid_bucket_name`` otherwise."""
    if not _BUCKET.match(name) or ".." in name or name in RESERVED:
        raise BadRequest("storage.invalid_bucket_name", params={"max": 63})
    return name


def object_key(key: str) -> str:
    """``key`` in Unicode NFC when it is a safe object key; 400 ``storage.invalid_key`` otherwise."""
    # NFC: "é" typed on macOS (decomposed) and on Linux (composed) are one object, as on Supabase.
    normalized = unicodedata.normalize("NFC", key)
    if not normalized or len(normalized.encode("utf-8")) > MAX_KEY_BYTES:
        raise _invalid(key, "length")
    if normalized.startswith("/") or "\\" in normalized:
        raise _invalid(key, "separator")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in normalized):
        raise _invalid(key, "control character")
    for segment in normalized.split("/"):
        if segment in ("", ".", ".."):
            raise _invalid(key, "segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _invalid(key, "segment length")
    return normalized


def folder_prefix(prefix: str) -> str:
    """A listing's folder (``photos`` or ``photos/``) as the key prefix of what it holds (``photos/``)."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    return object_key(stripped) + "/"


def _invalid(key: str, reason: str) -> BadRequest:
    # The key itself is not echoed: it may hold control characters meant for a log or a terminal.
    return BadRequest(
        "storage.invalid_key", params={"max": MAX_KEY_BYTES}, details={"reason": reason, "length": len(key)}
    )
