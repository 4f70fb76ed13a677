"""The TUS 1.0.0 resumable upload protocol's headers: parsing what a client sends, what the server answers.

apprun speaks TUS 1.0.0 at ``/storage/v1/upload/resumable`` (Supabase
Storage's path) with the ``creation``, ``creation-with-upload``,
``termination`` and ``expiration`` extensions. This file holds the protocol
alone (no storage, no HTTP framework): the upload's state lives in the
storage module's uploads table (`apprun.storage.uploads`), its bytes in a
staging file until the last one arrives.

Supabase's clients send the object's place in ``Upload-Metadata``:
``bucketName``, ``objectName``, ``contentType``, ``cacheControl`` and
``metadata`` (a JSON object), each value base64-encoded as TUS says.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import format_datetime

from apprun.kernel.errors import ApiError, BadRequest

__all__ = [
    "EXTENSIONS",
    "OCTET_STREAM",
    "VERSION",
    "TusMismatch",
    "UploadExpired",
    "UploadMetadata",
    "capabilities",
    "check_resumable",
    "encode_metadata",
    "http_date",
    "parse_length",
    "parse_metadata",
    "parse_offset",
]

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration"
#: The only content type a PATCH (or a creation with data) may carry.
OCTET_STREAM = "application/offset+octet-stream"
#: Five short fields and a small JSON object, base64-encoded: more is not an upload's description.
_MAX_METADATA = 8192
#: A byte count fits in a signed 64-bit integer (the tables' BIGINT).
_MAX_DIGITS = 18


class TusMismatch(ApiError):
    """412: the client speaks another TUS version than 1.0.0 (the answer names the one spoken here)."""

    status = 412
    default_code = "storage.tus_version"

    def __init__(self) -> None:
        super().__init__(params={"version": VERSION}, headers={"Tus-Version": VERSION})


class UploadExpired(ApiError):
    """410: the upload passed its ``Upload-Expires``; the cleanup pass removes it (then 404)."""

    status = 410
    default_code = "storage.upload_expired"


@dataclass(frozen=True, slots=True)
class UploadMetadata:
    """``Upload-Metadata``'s pairs, decoded (a key without a value maps to the empty string)."""

    pairs: Mapping[str, str]

    def get(self, key: str) -> str | None:
        return self.pairs.get(key)


def capabilities(max_size: int) -> dict[str, str]:
    """The headers of an ``OPTIONS`` answer."""
    return {
        "Tus-Resumable": VERSION,
        "Tus-Version": VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(max_size),
    }


def check_resumable(headers: Mapping[str, str]) -> None:
    """Every request but ``OPTIONS`` names the version it speaks; 412 for another (or none)."""
    if headers.get("tus-resumable") != VERSION:
        raise TusMismatch()


def _non_negative(raw: str | None, name: str) -> int:
    # isdigit() alone accepts "²" and other Unicode digits, which int() then refuses: ASCII only.
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        raise BadRequest("storage.tus_header", params={"name": name})
    return int(raw)


def parse_length(headers: Mapping[str, str]) -> int:
    """``Upload-Length``: the whole upload's size (deferred lengths are not offered: Supabase's clients
    always send it). The bucket's limit is the caller's to check."""
    return _non_negative(headers.get("upload-length"), "Upload-Length")


def parse_offset(headers: Mapping[str, str]) -> int:
    """``Upload-Offset`` of a ``PATCH``."""
    return _non_negative(headers.get("upload-offset"), "Upload-Offset")


def parse_metadata(raw: str | None) -> UploadMetadata:
    """``key base64value,key2 base64value2`` decoded; 400 ``storage.tus_header`` when malformed."""
    if not raw:
        return UploadMetadata({})
    if len(raw) > _MAX_METADATA:
        raise BadRequest("storage.tus_header", params={"name": "Upload-Metadata"})
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        key, _, value = item.strip().partition(" ")
        value = value.strip()
        if not key or " " in value or key in pairs:
            raise BadRequest("storage.tus_header", params={"name": "Upload-Metadata"})
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("storage.tus_header", params={"name": "Upload-Metadata"}) from None
    return UploadMetadata(pairs)


def encode_metadata(pairs: Mapping[str, str | None]) -> str:
    """``Upload-Metadata`` for a ``HEAD`` answer (pairs whose value is None are left out)."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items() if value is not None
    )


def http_date(when: dt.datetime) -> str:
    """``Upload-Expires``' format: an RFC 9110 HTTP date (``Wed, 02 Dec 2026 12:00:00 GMT``)."""
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)
