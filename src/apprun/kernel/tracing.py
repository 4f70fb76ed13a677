"""OpenTelemetry traces, exported over OTLP/HTTP when an endpoint is set.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` unset, no tracer provider is installed and
the span helpers here cost one flag check; the request's trace id then comes
from an incoming ``traceparent`` header, if any. With it set, every HTTP
request gets a server span (parent taken from ``traceparent``) and every SQL
statement a client span beneath it, batched to ``<endpoint>/v1/traces``.
Other modules add their own spans with `tracer()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from apprun.kernel.config import KernelSettings

__all__ = ["db_span", "enabled", "setup_tracing", "shutdown_tracing", "tracer"]

_state: dict[str, Any] = {"enabled": False, "provider": None}
_DB_SYSTEM = {"sqlite": "sqlite", "postgres": "postgresql"}


def enabled() -> bool:
    """Whether spans are recorded and exported in this process."""
    return bool(_state["enabled"])


def tracer() -> trace.Tracer:
    provider = _state["provider"]
    if provider is not None:
        return provider.get_tracer("apprun")  # type: ignore[no-any-return]
    return trace.get_tracer("apprun")


def setup_tracing(settings: KernelSettings) -> TracerProvider | None:
    """Install a tracer provider exporting to the OTLP endpoint, if one is set.

    Called in each worker's startup (never before a fork: the batch
    processor owns a thread).
    """
    if not settings.otel_exporter_otlp_endpoint:
        _state.update(enabled=False, provider=None)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from apprun import __version__

    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/")
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name,
                "service.version": __version__,
                "service.instance.id": settings.instance,
                "deployment.environment": settings.apprun_env,
            }
        )
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    _state.update(enabled=True, provider=provider)
    return provider


def shutdown_tracing() -> None:
    """Flush pending spans and stop the exporter."""
    provider = _state["provider"]
    _state.update(enabled=False, provider=None)
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def db_span(dialect: str, sql: str) -> Iterator[None]:
    """A client span around one SQL statement (a no-op when tracing is off)."""
    if not _state["enabled"]:
        yield
        return
    operation = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "SQL"
    with tracer().start_as_current_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={"db.system": _DB_SYSTEM.get(dialect, dialect), "db.statement": sql[:2000]},
        record_exception=False,
    ) as span:
        try:
            yield
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
