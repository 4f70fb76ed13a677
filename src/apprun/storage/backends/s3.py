"""The S3 backend: objects in one S3 bucket (``S3_BUCKET``) under ``<tenant or _global>/<bucket>/<key>``.

Built on obstore (benchmarks/RESULTS.md, "S3 clients": measured against
aioboto3 and chosen). Every apprun bucket is a key prefix in the one S3
bucket, so apprun needs no bucket rights on the store. Uploads are staged
under ``.staging/<token>``: no object key can land there, because an
object's backend key starts with its scope, a tenant's UUID or ``_global``.

S3 has no rename: publishing is a server-side copy (CopyObject, atomic for
readers: they see the old object or the new one) then a delete of the staged
key. CopyObject stops at 5 GiB, so `MAX_OBJECT_SIZE` bounds
``STORAGE_MAX_FILE_SIZE`` with this backend (module.py refuses more).

Memory: an upload that ends within one part (`PART_SIZE`) is buffered and
sent as one PUT (a streamed put would always be a multipart upload, three
requests for a few bytes); a longer one is a multipart upload holding at
most `PARTS_IN_FLIGHT` parts, about 16 MiB, where obstore's defaults would
hold 60 MiB. The size and MD5 (the ETag apprun serves, whatever the store
computes for a multipart upload) are counted as the bytes go by.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from obstore.exceptions import BaseError

from apprun.kernel.ids import new_id
from apprun.storage.backends.port import BackendError, Location, ObjectStat, Staged

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Store

__all__ = ["CHUNK", "MAX_OBJECT_SIZE", "PARTS_IN_FLIGHT", "PART_SIZE", "S3Backend", "client_options", "retry_config"]

#: One multipart part; uploads shorter than this are one PUT. S3 wants parts of at least 5 MiB.
PART_SIZE = 8 * 1024 * 1024
#: Parts one upload sends at once: with `PART_SIZE`, at most ~16 MiB of an upload is in memory.
PARTS_IN_FLIGHT = 2
#: The largest object publish can copy: S3's CopyObject limit (5 GiB).
MAX_OBJECT_SIZE = 5 * 1024**3
#: Smallest chunk a download yields (obstore's default, 10 MiB, would hold that much per download).
CHUNK = 256 * 1024
_STAGING = ".staging"


def client_options(*, allow_http: bool) -> ClientConfig:
    """HTTP options: fail fast on an unreachable store, never cut off a long, moving transfer."""
    return {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=5),
        # A stalled connection fails after 30 s without a byte; a whole request (a large download to a slow
        # client) may take long as long as bytes move (obstore's default of 30 s would cut it off).
        "read_timeout": timedelta(seconds=30),
        "timeout": timedelta(hours=1),
    }


def retry_config() -> RetryConfig:
    """A request waits seconds for the store, not obstore's default of up to 3 minutes of retries."""
    return {"max_retries": 3, "retry_timeout": timedelta(seconds=10)}


class S3Backend:
    """`StorageBackend` on one bucket of an S3-compatible store (AWS, MinIO, SeaweedFS)."""

    name = "s3"

    def __init__(self, store: S3Store, *, description: str) -> None:
        self.store: S3Store | None = store
        #: For messages: ``s3://<bucket> at <endpoint>``, never a credential.
        self.description = description

    @classmethod
    def connect(
        cls, *, endpoint: str | None, bucket: str, access_key: str, secret_key: str, region: str, path_style: bool
    ) -> S3Backend:
        """A backend on ``bucket`` at ``endpoint`` (None: AWS's for ``region``); no request is made until the
        first call (see `check`)."""
        from obstore.store import S3Store

        store = S3Store(
            bucket,
            endpoint=endpoint,
            access_key_id=access_key,
            secret_access_key=secret_key,
            region=region,
            # Path-style (``endpoint/bucket/key``) for MinIO and SeaweedFS; AWS wants virtual-hosted style.
            virtual_hosted_style_request=not path_style,
            client_options=client_options(allow_http=bool(endpoint and endpoint.startswith("http://"))),
            retry_config=retry_config(),
        )
        return cls(store, description=f"s3://{bucket} at {endpoint or 'AWS ' + region}")

    async def put(self, location: Location, chunks: AsyncIterator[bytes]) -> Staged:
        store = self._store()
        self._key(location)  # refuse a bad location before sending anything
        token = new_id()
        staging = f"{_STAGING}/{token}"
        digest = hashlib.md5(usedforsecurity=False)  # an ETag, as S3's: a fingerprint, not a security check
        size = 0
        head: deque[bytes] = deque()
        buffered = 0
        try:
            source = aiter(chunks)
            async for chunk in source:
                digest.update(chunk)
                size += len(chunk)
                head.append(chunk)
                buffered += len(chunk)
                if buffered >= PART_SIZE:
                    break
            else:
                await store.put_async(staging, b"".join(head), use_multipart=False)
                return Staged(location, token, size, digest.hexdigest())

            async def rest() -> AsyncIterator[bytes]:
                nonlocal size
                while head:
                    yield head.popleft()  # handed over, not kept: obstore holds it until its part is sent
                async for more in source:
                    digest.update(more)
                    size += len(more)
                    yield more

            # The iterator's own errors (a size limit) come out of put_async as raised, after obstore aborted
            # the multipart upload; so nothing is left but what a crash leaves (the sweeper's).
            await store.put_async(
                staging, rest(), use_multipart=True, chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT
            )
        except BaseError as exc:
            await self._forget(staging)
            raise BackendError(str(exc)) from exc
        except BaseException:
            await self._forget(staging)
            raise
        return Staged(location, token, size, digest.hexdigest())

    async def publish(self, staged: Staged) -> None:
        store = self._store()
        staging = f"{_STAGING}/{staged.token}"
        try:
            await store.copy_async(staging, self._key(staged.location))
        except BaseError as exc:
            await self.discard(staged)
            raise BackendError(str(exc)) from exc
        await self._forget(staging)

    async def discard(self, staged: Staged) -> None:
        await self._forget(f"{_STAGING}/{staged.token}")

    async def copy(self, source: Location, target: Location) -> Staged:
        store = self._store()
        self._key(target)
        token = new_id()
        staging = f"{_STAGING}/{token}"
        try:
            # FileNotFoundError (obstore's NotFoundError is one) propagates: the service answers 404.
            await store.copy_async(self._key(source), staging)
            # The store's ETag is not an MD5 for a multipart upload: read the copy to give the one apprun serves.
            digest = hashlib.md5(usedforsecurity=False)
            size = 0
            async for chunk in self._stream(staging, None):
                digest.update(chunk)
                size += len(chunk)
        except FileNotFoundError:
            await self._forget(staging)
            raise
        except BaseError as exc:
            await self._forget(staging)
            raise BackendError(str(exc)) from exc
        except BaseException:
            await self._forget(staging)
            raise
        return Staged(target, token, size, digest.hexdigest())

    async def get(self, location: Location, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        # obstore's ranges end before their end; the port's are inclusive.
        wanted: tuple[int, int] | dict[str, int] | None = None
        if end is not None:
            wanted = (start, end + 1)
        elif start:
            wanted = {"offset": start}
        async for chunk in self._stream(self._key(location), wanted):
            yield chunk

    async def head(self, location: Location) -> ObjectStat | None:
        try:
            meta = await self._store().head_async(self._key(location))
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise BackendError(str(exc)) from exc
        return ObjectStat(size=meta["size"])

    async def delete(self, location: Location) -> None:
        # S3 answers 204 for a missing key: deleting twice is not an error.
        try:
            await self._store().delete_async(self._key(location))
        except BaseError as exc:
            raise BackendError(str(exc)) from exc

    async def sweep(self, older_than: float) -> int:
        # A staged key exists only once its upload completed (a multipart upload shows no key until then):
        # its age is the time since that upload ended without a row. Unfinished multipart uploads are the
        # store's to expire (an AbortIncompleteMultipartUpload lifecycle rule, see docs/storage.md).
        store = self._store()
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        stale: list[str] = []
        try:
            async for batch in store.list(prefix=f"{_STAGING}/", chunk_size=1000):
                stale.extend(meta["path"] for meta in batch if meta["last_modified"] < cutoff)
            for key in stale:
                await store.delete_async(key)
        except BaseError as exc:
            raise BackendError(str(exc)) from exc
        return len(stale)

    async def check(self) -> str:
        """Write and remove a probe in the staging prefix: the credentials may write, the bucket exists."""
        store = self._store()
        probe = f"{_STAGING}/.probe-{new_id()}"
        try:
            await store.put_async(probe, b"", use_multipart=False)
            await store.delete_async(probe)
        except BaseError as exc:
            raise BackendError(f"{self.description}: {_first_line(exc)}") from exc
        return f"{self.description} is writable"

    async def close(self) -> None:
        """Let go of the store (its connection pool); the module's stop calls it, further calls fail."""
        self.store = None

    async def _stream(self, key: str, wanted: tuple[int, int] | dict[str, int] | None) -> AsyncIterator[bytes]:
        store = self._store()
        try:
            options = {"range": wanted} if wanted is not None else None
            result = await store.get_async(key, options=options)  # type: ignore[arg-type]
            async for chunk in result.stream(min_chunk_size=CHUNK):
                # An ASGI body must be bytes; obstore's Bytes is a buffer.
                yield bytes(chunk)
        except FileNotFoundError:
            raise
        except BaseError as exc:
            raise BackendError(str(exc)) from exc

    async def _forget(self, key: str) -> None:
        """Delete ``key`` if it is there; a failure here is logged by nobody and left to the sweeper."""
        if self.store is None:
            return
        try:
            await self.store.delete_async(key)
        except BaseError:
            return

    def _store(self) -> S3Store:
        if self.store is None:
            raise BackendError("the S3 backend is closed")
        return self.store

    def _key(self, location: Location) -> str:
        # The keys module refuses every key that could name something else; this keeps each tenant's prefix
        # and the staging prefix hard boundaries anyway.
        for segment in (location.scope, location.bucket):
            if segment in ("", ".", "..", _STAGING) or "/" in segment or "\\" in segment:
                raise BackendError("not a scope or bucket name")
        if any(part in ("", ".", "..") for part in location.key.split("/")):
            raise BackendError("the key leaves its bucket")
        return f"{location.scope}/{location.bucket}/{location.key}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
