"""Structured logs: one JSON object per line on stdout, via structlog.

Records from the standard library (granian, alembic, asyncio) go through the
same renderer, so a log collector sees one format. Fields bound with
`bind_request` (request id, trace id, tenant, user) appear on every line logged
while that request is served.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any, TextIO

import msgspec
import structlog

__all__ = ["configure_logging", "get_logger", "logging_dict_config"]

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
