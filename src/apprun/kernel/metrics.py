"""Prometheus metrics, served at ``/metrics``.

Names are ``apprun_*``. With several granian workers, each worker is its own
process; `apprun serve` then points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start, every worker writes its samples there,
and whichever worker answers ``/metrics`` aggregates them all
(prometheus_client's multiprocess mode). Counters and histograms are summed
across workers; pool gauges are summed over live workers; per-process gauges
carry a ``pid`` label.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from apprun.kernel.db.port import PoolStats

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "multiprocess_dir"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    """The shared sample directory when several workers run, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The kernel's metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        reg = self.registry
        self.http_requests = Counter(
            "apprun_http_requests_total",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            registry=reg,
        )
        self.http_duration = Histogram(
            "apprun_http_request_duration_seconds",
            "Time from request received to response sent.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.http_in_flight = Gauge(
            "apprun_http_requests_in_flight",
            "Requests being served now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.db_pool_size = Gauge(
            "apprun_db_pool_connections", "Open database connections.", registry=reg, multiprocess_mode="livesum"
        )
        self.db_pool_idle = Gauge(
            "apprun_db_pool_idle_connections", "Idle database connections.", registry=reg, multiprocess_mode="livesum"
        )
        self.db_pool_max = Gauge(
            "apprun_db_pool_max_connections",
            "Most connections the pools may open.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.db_pool_waiting = Gauge(
            "apprun_db_pool_waiting",
            "Tasks waiting for a database connection.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.process_rss = Gauge(
            "apprun_process_resident_memory_bytes",
            "Resident memory of each apprun worker process.",
            ["pid"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        self.process_cpu = Gauge(
            "apprun_process_cpu_seconds",
            "CPU time used by each apprun worker process.",
            ["pid"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        self.process_fds = Gauge(
            "apprun_process_open_fds",
            "Open file descriptors of each apprun worker process.",
            ["pid"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        if not self.multiprocess:
            ProcessCollector(registry=reg)
        self._children: dict[tuple[str, str, str], tuple[Callable[[], None], Callable[[float], None]]] = {}
        self._pool_source: Callable[[], PoolStats] | None = None
        self._process = psutil.Process()
        self._pid = str(os.getpid())

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one served request (label children are cached per key)."""
        key = (method, route, str(status))
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self.http_requests.labels(method, route, key[2]).inc,
                self.http_duration.labels(method, route).observe,
            )
            if len(self._children) < 10_000:
                self._children[key] = pair
        pair[0]()
        pair[1](seconds)

    def watch_pool(self, source: Callable[[], PoolStats]) -> None:
        self._pool_source = source

    def sample(self) -> None:
        """Refresh the gauges that are read, not counted (pool, process)."""
        if self._pool_source is not None:
            stats = self._pool_source()
            self.db_pool_size.set(stats.size)
            self.db_pool_idle.set(stats.idle)
            self.db_pool_max.set(stats.max)
            self.db_pool_waiting.set(stats.waiting)
        pid = str(os.getpid())
        if pid != self._pid:  # forked after creation: sample the right process
            self._pid, self._process = pid, psutil.Process()
        with self._process.oneshot():
            self.process_rss.labels(pid).set(self._process.memory_info().rss)
            cpu = self._process.cpu_times()
            self.process_cpu.labels(pid).set(cpu.user + cpu.system)
            self.process_fds.labels(pid).set(self._process.num_fds())

    def render(self) -> bytes:
        """The exposition text of every worker's samples."""
        self.sample()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def close(self) -> None:
        """Forget this worker's live gauges (multiprocess mode)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
