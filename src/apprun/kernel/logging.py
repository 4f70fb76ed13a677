"""Structured logs: one JSON object per line on stdout, via structlog.

Records from the standard library (granian, alembic, asyncio) go through the
same renderer, so a log collector sees one format. Fields bound with
`bind_request` (request id, trace id, tenant, user) appear on every line logged
while that request is served.
"""

from __future__ import annotations

import datetime
import logging
import logging.config
import sys
from typing import TYPE_CHECKING, Any, TextIO

import msgspec
import structlog

if TYPE_CHECKING:
    from apprun.kernel.context import RequestContext

__all__ = ["access_log", "configure_logging", "get_logger", "logging_dict_config"]

_encoder = msgspec.json.Encoder()


def _serialize(obj: Any, **_: Any) -> str:
    try:
        return _encoder.encode(obj).decode()
    except (TypeError, msgspec.EncodeError):
        return _encoder.encode({k: str(v) for k, v in obj.items()}).decode()


def _add_component(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["component"] = record.name
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _add_component,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]


def _renderer(fmt: str) -> Any:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(serializer=_serialize)


def logging_dict_config(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A `logging.config.dictConfig` that renders stdlib records like structlog's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "apprun": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _renderer(fmt),
                ],
                "foreign_pre_chain": _shared_processors(),
            }
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "apprun",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # Per-request lines come from apprun's access log, not the server's.
            "_granian": {"level": "WARNING"},
            "granian.access": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            # Casbin prints its model at INFO for every enforcer it builds.
            "casbin": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) in one format.

    structlog writes straight to the stream (the access log is on every
    request's path, so it skips the stdlib machinery); stdlib records are
    rendered by the same processors through `ProcessorFormatter`.
    """
    out = stream if stream is not None else sys.stdout
    access_log.configure(out if fmt == "json" else None, enabled=logging.getLevelNamesMapping()[level] <= logging.INFO)
    config = logging_dict_config(level, fmt)
    config["handlers"]["stdout"]["stream"] = out
    logging.config.dictConfig(config)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A structlog logger; use keyword fields, not formatted strings."""
    return structlog.get_logger(component=name)


class _AccessLog:
    """The access log: one JSON line per request, written without structlog's processor chain.

    It is on every request's path, so with the JSON format it builds the line
    itself: the same fields as structlog would render for
    ``get_logger("apprun.access").info("http_request", ...)`` with the request's
    ids bound (``tests/kernel/test_access_log.py`` compares the two). With the
    console format, or before `configure_logging`, it goes through structlog.
    """

    __slots__ = ("enabled", "out", "slow")

    def __init__(self) -> None:
        self.out: TextIO | None = None
        self.enabled = True
        self.slow = structlog.get_logger(component="apprun.access")

    def configure(self, out: TextIO | None, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled

    def __call__(
        self, ctx: RequestContext, method: str, route: str, path: str, *, status: int, duration_ms: float
    ) -> None:
        """Write the line of one request (``ctx`` gives its ids, tenant, user and client address)."""
        if not self.enabled:
            return
        if self.out is None:
            self.slow.info(
                "http_request",
                method=method,
                route=route,
                path=path,
                status=status,
                duration_ms=duration_ms,
                tenant_id=ctx.tenant_id,
                user_id=ctx.user_id,
                client_ip=ctx.client_ip,
            )
            return
        line = _encoder.encode(
            {
                "component": "apprun.access",
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "tenant_id": ctx.tenant_id,
                "user_id": ctx.user_id,
                "client_ip": ctx.client_ip,
                "event": "http_request",
                "request_id": ctx.request_id,
                "trace_id": ctx.trace_id,
                "level": "info",
                "ts": datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z"),
            }
        )
        self.out.write(line.decode() + "\n")
        self.out.flush()


#: The access log's writer (`_AccessLog`), configured by `configure_logging`.
access_log = _AccessLog()
