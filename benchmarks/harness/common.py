"""What every part of the harness shares: a request to replay, a measured run, a system under test."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from apprun.testing.engines import EngineError, free_port

__all__ = [
    "WORKLOADS",
    "EngineError",
    "LoadResult",
    "Request",
    "System",
    "free_port",
    "stop_group",
    "tree_cpu_seconds",
    "tree_pss",
    "tree_rss",
    "wait_http",
]

#: The HTTP workloads every system answers, in report order.
WORKLOADS = ("list_public", "list_auth", "view", "create", "login")


@dataclass(frozen=True)
class Request:
    """One HTTP request a load generator replays; ``paths`` (if given) are cycled instead of ``path``."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    paths: tuple[str, ...] = ()


@dataclass
class LoadResult:
    """One measured run of a load generator against one URL."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float | None
    p99_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts
    loadgen_cpu_s: float  # CPU seconds the load generator itself used
    sut_cpu_s: float = 0.0  # CPU seconds the system under test used (filled in by the runner)


class System(abc.ABC):
    """A system under test: started on free loopback ports, seeded, asked for requests, stopped.

    Subclasses set ``name`` (short, stable: used as a JSON key) and ``label``
    (what the table shows), and fill in the methods below. `stop` must be
    safe to call at any time, more than once, and before `start`: the
    harness calls it on the way out whatever state a failure left.
    """

    name = "system"
    label = "system"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abc.abstractmethod
    def start(self) -> None:
        """Start the system's processes and wait until it answers."""

    @abc.abstractmethod
    def seed(self, records: int) -> None:
        """Create the collections, users and ``records`` rows the workloads read."""

    @abc.abstractmethod
    def requests(self) -> dict[str, Request]:
        """The request for each workload in `WORKLOADS` this system answers (after `seed`)."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every process of this system (for memory and CPU accounting)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process of the system."""


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop ``proc``, started with ``start_new_session=True``, and every process of its group.

    SIGTERM first; SIGKILL to the whole group if it has not exited after
    ``grace`` seconds. Forked workers (granian's) can outlive their main
    process by a moment, still holding the port, so this returns only once
    the group is empty: a restart on the same port cannot be answered by the
    old workers, and nothing is left running when the harness exits.
    """
    group = proc.pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            proc.wait(5)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline + 5:  # (a zombie left unreaped would keep the group forever)
        try:
            os.killpg(group, signal.SIGKILL if time.monotonic() > deadline else 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _tree(pids: Iterable[int]) -> list[psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                procs[proc.pid] = proc
    return list(procs.values())


def tree_rss(pids: Iterable[int]) -> int:
    """Resident memory in bytes of these processes and all their children, summed (shared pages counted in each)."""
    total = 0
    for proc in _tree(pids):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def tree_pss(pids: Iterable[int]) -> int:
    """Proportional set size in bytes of these processes and their children, summed.

    A page shared by n processes counts 1/n in each, so the sum is the memory
    the system really uses — the fair figure for forked workers, which share
    the pages of the modules their parent imported. Falls back to RSS where
    the kernel does not report PSS.
    """
    total = 0
    for proc in _tree(pids):
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
    return total


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by these processes and their children."""
    total = 0.0
    for proc in _tree(pids):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers anything below 500."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(url, timeout=1.0)
            if reply.status_code < 500:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.05)
    raise EngineError(f"{url} not ready after {timeout:g} s ({last})")
