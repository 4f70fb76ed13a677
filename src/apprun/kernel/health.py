"""Health checks: one entry per configured dependency.

Modules register a check when they configure a dependency (the kernel
registers ``database``; events registers ``bus``, storage ``storage`` …). A
check is an async callable that returns a message or raises; it runs with a
timeout, concurrently with the others. The overall status is ``UP`` when all
are up, ``DEGRADED`` when only optional ones are down, and ``DOWN`` (HTTP
503) when a required one is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from apprun.kernel.logging import get_logger

__all__ = ["CheckFn", "CheckResult", "HealthRegistry", "HealthReport", "Status"]

Status = Literal["UP", "DEGRADED", "DOWN"]
CheckFn = Callable[[], Awaitable[str | None]]

_log = get_logger("apprun.health")


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Literal["UP", "DOWN"]
    message: str
    latency_ms: float
    required: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "latency_ms": round(self.latency_ms, 2),
            "required": self.required,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Status
    details: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 503 if self.status == "DOWN" else 200

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "details": {k: v.to_dict() for k, v in self.details.items()}}


@dataclass(slots=True)
class _Check:
    fn: CheckFn
    required: bool
    timeout: float


class HealthRegistry:
    """The dependencies this process checks."""

    def __init__(self, default_timeout: float = 2.0) -> None:
        self._checks: dict[str, _Check] = {}
        self.default_timeout = default_timeout

    def register(self, name: str, fn: CheckFn, *, required: bool = True, timeout: float | None = None) -> None:
        """Add (or replace) the check called ``name``."""
        self._checks[name] = _Check(fn=fn, required=required, timeout=timeout or self.default_timeout)

    def names(self) -> list[str]:
        return list(self._checks)

    async def _run_one(self, name: str, check: _Check) -> CheckResult:
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(check.timeout):
                message = await check.fn()
            status: Literal["UP", "DOWN"] = "UP"
            text = message or "ok"
        except TimeoutError:
            status, text = "DOWN", f"no answer within {check.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency is a DOWN, never a 500
            status, text, failure = "DOWN", _describe(exc), exc
        latency = (time.perf_counter() - start) * 1000
        if status == "DOWN":
            _log.warning("health_check_down", check=name, message=text, cause=_cause_text(failure))
        return CheckResult(status=status, message=text, latency_ms=latency, required=check.required)

    async def run(self) -> HealthReport:
        """Run every check at once and aggregate."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(n, self._checks[n]) for n in names))
        details = dict(zip(names, results, strict=True))
        if any(r.status == "DOWN" and r.required for r in results):
            overall: Status = "DOWN"
        elif any(r.status == "DOWN" for r in results):
            overall = "DEGRADED"
        else:
            overall = "UP"
        return HealthReport(status=overall, details=details)


def _describe(exc: BaseException) -> str:
    """A short reason for the public report: codes and exception types only.

    The health check is public, so it names no hosts, ports or paths; the
    full cause is in the warning logged beside it.
    """
    code = getattr(exc, "code", None)
    cause = exc.__cause__
    if code and cause is not None:
        return f"{code} ({type(cause).__name__})"
    if code:
        return str(code)
    return type(exc).__name__


def _cause_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    root = exc.__cause__ or exc
    return f"{type(root).__name__}: {root}"
