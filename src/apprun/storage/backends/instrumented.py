"""Any backend, counted and traced: Prometheus metrics and a client span for every call.

`InstrumentedBackend` wraps the adapter the module builds (local disk or S3)
and implements the same port by delegation, so the service never knows:

- ``apprun_storage_operations_total{operation, outcome}``: calls, by
  operation (``put``, ``publish``, ``discard``, ``copy``, ``get``, ``head``,
  ``delete``, ``sweep``) and outcome (``ok``, ``error``; ``aborted``: a download the
  client left before its end);
- ``apprun_storage_operation_seconds{operation}``: how long they took (a
  download's time runs until its last chunk);
- ``apprun_storage_bytes_total{direction}``: bytes written (``in``, counted
  as uploads stream) and read (``out``, as downloads stream);
- a span ``storage <operation>`` (kind client, with the backend's name and
  the bucket) when tracing is on, in the trace of the request.

Object counts are the database's (``apprun_storage_objects``), not the
backend's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram

from apprun.kernel import tracing
from apprun.storage.backends.port import Location, ObjectStat, Staged, StorageBackend

__all__ = ["InstrumentedBackend", "StorageMetrics"]

T = TypeVar("T")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StorageMetrics:
    """The storage module's Prometheus metrics, in the app's registry (multi-worker aware)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.operations = Counter(
            "apprun_storage_operations_total",
            "Calls to the storage backend, by operation and outcome (ok, error, aborted).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "apprun_storage_operation_seconds",
            "Duration of storage backend calls (a download's until its last chunk).",
            ["operation"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.bytes = Counter(
            "apprun_storage_bytes_total",
            "Object bytes written to (in) and read from (out) the storage backend.",
            ["direction"],
            registry=registry,
        )


class InstrumentedBackend:
    """`StorageBackend` around another one, measuring every call (see the module docstring)."""

    def __init__(self, inner: StorageBackend, metrics: StorageMetrics) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics
        self._bytes_in = metrics.bytes.labels("in")
        self._bytes_out = metrics.bytes.labels("out")

    async def _call(self, operation: str, bucket: str | None, call: Callable[[], Awaitable[T]]) -> T:
        start = time.perf_counter()
        span = self._span(operation, bucket)
        try:
            result = await call()
        except BaseException as exc:
            self._done(operation, "error", start, span, exc)
            raise
        self._done(operation, "ok", start, span, None)
        return result

    def _span(self, operation: str, bucket: str | None) -> Any:
        if not tracing.enabled():
            return None
        attributes = {"apprun.storage.backend": self.name}
        if bucket is not None:
            attributes["apprun.storage.bucket"] = bucket
        return tracing.tracer().start_span(f"storage {operation}", kind=SpanKind.CLIENT, attributes=attributes)

    def _done(self, operation: str, outcome: str, start: float, span: Any, exc: BaseException | None) -> None:
        self.metrics.operations.labels(operation, outcome).inc()
        self.metrics.seconds.labels(operation).observe(time.perf_counter() - start)
        if span is not None:
            if exc is not None:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self._bytes_in.inc(len(chunk))
            yield chunk

    async def put(self, location: Location, chunks: AsyncIterator[bytes]) -> Staged:
        return await self._call("put", location.bucket, lambda: self.inner.put(location, self._counted(chunks)))

    async def publish(self, staged: Staged) -> None:
        await self._call("publish", staged.location.bucket, lambda: self.inner.publish(staged))

    async def discard(self, staged: Staged) -> None:
        await self._call("discard", staged.location.bucket, lambda: self.inner.discard(staged))

    async def copy(self, source: Location, target: Location) -> Staged:
        return await self._call("copy", target.bucket, lambda: self.inner.copy(source, target))

    async def get(self, location: Location, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        begun = time.perf_counter()
        span = self._span("get", location.bucket)
        sent = 0
        try:
            async for chunk in self.inner.get(location, start, end):
                self._bytes_out.inc(len(chunk))
                sent += len(chunk)
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            # The stream was closed before its end: after its last byte (the server may end a reply once
            # its Content-Length is sent), or because the client went away: not the backend's failure.
            whole = end is not None and sent == end - start + 1
            self._done("get", "ok" if whole else "aborted", begun, span, None)
            raise
        except BaseException as exc:
            self._done("get", "error", begun, span, exc)
            raise
        self._done("get", "ok", begun, span, None)

    async def head(self, location: Location) -> ObjectStat | None:
        return await self._call("head", location.bucket, lambda: self.inner.head(location))

    async def delete(self, location: Location) -> None:
        await self._call("delete", location.bucket, lambda: self.inner.delete(location))

    async def sweep(self, older_than: float) -> int:
        return await self._call("sweep", None, lambda: self.inner.sweep(older_than))

    async def check(self) -> str:
        return await self.inner.check()
