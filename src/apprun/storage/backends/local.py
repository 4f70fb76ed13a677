"""The local-disk backend: objects as files under ``STORAGE_DIR/<tenant or _global>/<bucket>/<key>``.

The layout mirrors the keys so an operator can read, back up and restore a
bucket with ordinary tools. Uploads are written to ``STORAGE_DIR/.staging``,
on the same filesystem, and published with ``os.replace``: a reader sees the
old bytes or the new ones, never half of either. File I/O runs in a thread,
one call per chunk, so a slow disk never stalls the event loop; a chunk is at
most what the client sent in one ASGI message, or `CHUNK` on reads.

Keys reach this module already checked (`apprun.storage.keys.object_key`);
`_path` still refuses a path that would leave the root, as a second lock on
the same door.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from apprun.kernel.ids import new_id
from apprun.storage.backends.port import BackendError, KeyConflict, Location, ObjectStat, Staged

__all__ = ["CHUNK", "LocalBackend"]

#: Bytes read from disk per thread hop when streaming a download.
CHUNK = 256 * 1024
_STAGING = ".staging"


class LocalBackend:
    """`StorageBackend` on a directory of the local filesystem."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.staging = self.root / _STAGING

    async def put(self, location: Location, chunks: AsyncIterator[bytes]) -> Staged:
        target = self._path(location)  # refuse a bad location before writing anything
        if await asyncio.to_thread(_conflicts, target, self.root):
            raise KeyConflict(location.key)
        await asyncio.to_thread(self.staging.mkdir, parents=True, exist_ok=True)
        token = new_id()
        temp = self.staging / token
        digest = hashlib.md5(usedforsecurity=False)  # an ETag, as S3's: a fingerprint, not a security check
        size = 0
        handle = await asyncio.to_thread(open, temp, "xb")
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_flush, handle)
        except BaseException:
            await asyncio.to_thread(_close_and_remove, handle, temp)
            raise
        await asyncio.to_thread(handle.close)
        return Staged(location, token, size, digest.hexdigest())

    async def publish(self, staged: Staged) -> None:
        target = self._path(staged.location)
        try:
            await asyncio.to_thread(_replace, self.staging / staged.token, target)
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            await self.discard(staged)
            raise KeyConflict(staged.location.key) from exc
        except OSError as exc:
            await self.discard(staged)
            raise BackendError(exc.strerror or str(exc)) from exc

    async def discard(self, staged: Staged) -> None:
        await asyncio.to_thread(_unlink, self.staging / staged.token)

    async def sweep(self, older_than: float) -> int:
        # A staged file's modification time is its upload's last write: one still streaming stays.
        return await asyncio.to_thread(_sweep, self.staging, time.time() - older_than)

    async def copy(self, source: Location, target: Location) -> Staged:
        src = self._path(source)
        if await asyncio.to_thread(_conflicts, self._path(target), self.root):
            raise KeyConflict(target.key)
        await asyncio.to_thread(self.staging.mkdir, parents=True, exist_ok=True)
        token = new_id()
        temp = self.staging / token
        try:
            await asyncio.to_thread(shutil.copyfile, src, temp)
            etag, size = await asyncio.to_thread(_md5_of, temp)
        except BaseException:
            await asyncio.to_thread(_unlink, temp)
            raise
        return Staged(target, token, size, etag)

    async def get(self, location: Location, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(location)
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            if start:
                await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = await asyncio.to_thread(handle.read, CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def head(self, location: Location) -> ObjectStat | None:
        try:
            stat = await asyncio.to_thread(os.stat, self._path(location))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectStat(size=stat.st_size)

    async def delete(self, location: Location) -> None:
        path = self._path(location)
        await asyncio.to_thread(_unlink, path)
        await asyncio.to_thread(_prune_empty_dirs, path.parent, self.root)

    async def check(self) -> str:
        def probe() -> str:
            self.staging.mkdir(parents=True, exist_ok=True)
            probe_file = self.staging / f".probe-{new_id()}"
            probe_file.write_bytes(b"")
            probe_file.unlink()
            return f"{self.root} is writable"

        return await asyncio.to_thread(probe)

    def _path(self, location: Location) -> Path:
        # The keys module refuses every key that could escape; this keeps each tenant's directory a hard
        # boundary anyway: the scope and bucket are one plain segment each, and the key stays beneath them.
        for segment in (location.scope, location.bucket):
            if segment in ("", ".", "..", _STAGING) or "/" in segment or "\\" in segment:
                raise BackendError("not a scope or bucket name")
        bucket_dir = self.root / location.scope / location.bucket
        path = bucket_dir / location.key
        if os.path.commonpath([bucket_dir, os.path.normpath(path)]) != str(bucket_dir) or path == bucket_dir:
            raise BackendError("the key leaves its bucket")
        return path


def _conflicts(target: Path, root: Path) -> bool:
    """Whether a file stands where ``target`` needs a directory, or a directory where it needs a file.

    Keys ``a`` and ``a/b`` can both exist in S3 but not as files on disk; checked before the bytes are
    staged, so the refusal costs no upload (publishing checks again, for a key made in between).
    """
    if target.is_dir():
        return True
    parent = target.parent
    while parent != root and not parent.exists():
        parent = parent.parent
    return parent != root and not parent.is_dir()


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _close_and_remove(handle: BinaryIO, path: Path) -> None:
    handle.close()
    _unlink(path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.EISDIR):
            raise


def _replace(temp: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)


def _md5_of(path: Path) -> tuple[str, int]:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _prune_empty_dirs(directory: Path, root: Path) -> None:
    """Remove the directories a deleted key leaves empty, up to its bucket's."""
    bucket_depth = len(root.parts) + 2
    while len(directory.parts) > bucket_depth:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _sweep(staging: Path, cutoff: float) -> int:
    """Remove the files of ``staging`` last written before ``cutoff`` (Unix time); how many."""
    try:
        entries = list(os.scandir(staging))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # another worker's sweep, or its publish, took it first
            continue
    return removed
