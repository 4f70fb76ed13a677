"""MIME types: a declared type's essence, and whether a bucket's ``allowed_mime_types`` take it."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["essence", "mime_allowed"]


def essence(content_type: str) -> str:
    """``type/subtype`` in lower case, without parameters (``text/plain;charset=UTF-8`` -> ``text/plain``)."""
    return content_type.split(";", 1)[0].strip().lower()


def mime_allowed(mime: str, allowed: Iterable[str]) -> bool:
    """Whether ``mime`` matches one of ``allowed`` (exact, ``image/*``, or ``*/*``)."""
    kind = mime.partition("/")[0]
    return any(pattern in (mime, f"{kind}/*", "*/*", "*") for pattern in allowed)
