"""The storage backend port: what the service asks of wherever object bytes live.

An object is named by a `Location` (scope, bucket, key), where the scope is
the tenant's id or ``_global``: a backend prefixes every key with it, so one
tenant can never name another's bytes. Writes happen in two steps, so that a
metadata row never points at missing or half-written bytes:

1. `put` streams the bytes to a temporary place, computing their size and
   MD5 (the ETag) on the way, and returns a `Staged` upload;
2. the service commits the metadata row, then `publish` moves the staged
   bytes to the object's place in one atomic step (a rename on disk);
   if the row does not commit, `discard` removes the staged bytes.

A crash between the steps leaves staged bytes with no row, which part 2's
sweeper removes after a bounded age; never a row without bytes, but for the
instant between a commit and its rename.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["GLOBAL_SCOPE", "BackendError", "KeyConflict", "Location", "ObjectStat", "Staged", "StorageBackend"]

#: The scope of a bucket that belongs to no tenant. Tenant ids are UUIDs, so it cannot clash with one.
GLOBAL_SCOPE = "_global"


@dataclass(frozen=True, slots=True)
class Location:
    """Where one object's bytes are: ``scope`` (a tenant id or `GLOBAL_SCOPE`), ``bucket``, ``key``."""

    scope: str
    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class Staged:
    """Bytes written but not yet visible: ``token`` is the backend's name for the temporary copy."""

    location: Location
    token: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectStat:
    size: int


class BackendError(Exception):
    """The backend failed (disk full, store unreachable); the service answers 503."""


class KeyConflict(BackendError):
    """The backend cannot hold this key beside another (``a`` and ``a/b`` on a filesystem)."""


class StorageBackend(Protocol):
    """Object bytes, streamed both ways: no method holds a whole object in memory."""

    name: str

    async def put(self, location: Location, chunks: AsyncIterator[bytes]) -> Staged:
        """Write ``chunks`` to a temporary place for ``location``; on any error (the iterator's
        included, such as a size limit) nothing is left behind and the error propagates."""
        ...

    async def publish(self, staged: Staged) -> None:
        """Make staged bytes the object at their location, replacing what was there, atomically."""
        ...

    async def discard(self, staged: Staged) -> None:
        """Remove staged bytes that will never be published (idempotent)."""
        ...

    async def copy(self, source: Location, target: Location) -> Staged:
        """Stage a copy of ``source``'s bytes for ``target`` (published like an upload)."""
        ...

    def get(self, location: Location, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes of ``location`` from ``start`` to ``end`` inclusive (None: to the last)."""
        ...

    async def head(self, location: Location) -> ObjectStat | None:
        """The object's size, or None when its bytes are missing."""
        ...

    async def delete(self, location: Location) -> None:
        """Remove the object's bytes (missing bytes are not an error)."""
        ...

    async def sweep(self, older_than: float) -> int:
        """Remove staged bytes nothing has written to for ``older_than`` seconds; how many.

        What an upload cut off by a crash (kill -9, a lost machine) left
        staged: no row names them, and no upload still writes them.
        """
        ...

    async def check(self) -> str:
        """For the health check: a short message, or an exception when the backend cannot be used."""
        ...
