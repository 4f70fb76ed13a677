"""Memory of ``apprun serve`` alone: PSS idle and at peak under the harness's workloads, per process.

``make bench`` measures memory next to everything else (10 minutes); this
starts only apprun, the same way (`benchmarks.harness.apprun_system.Apprun`:
``apprun serve``, production mode, N granian workers, events to a NATS
server), seeds it, reads the memory of every process idle, then runs each
HTTP workload once with wrk (64 connections) while sampling the peak, as the
harness does (`tree_pss`, every 0.25 s). It prints one JSON line per round:
the PSS sum right after the start (``started_mb``: no collection yet), idle
after seeding (``idle_mb``: what ``make bench`` reports as idle), the peak
(overall and per workload), and each process's PSS, USS and RSS.

To compare two commits, run it alternately in a worktree of each (the
``apprun`` it serves is the one ``PYTHONPATH`` or ``--src`` points at),
several rounds, and compare medians:

    python -m benchmarks.memory --src ../wt-base/src --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import psutil

from apprun.testing.engines import NatsServer
from benchmarks.harness.apprun_system import Apprun
from benchmarks.harness.common import WORKLOADS, tree_pss
from benchmarks.harness.load import ensure_tools, run_wrk
from benchmarks.harness.run import PeakSampler
from benchmarks.harness.shutdown import Engines, stopped_on_exit

MB = 2**20


def _processes(pid: int) -> list[dict[str, Any]]:
    """Each process of the tree rooted at ``pid``: its role, PSS, USS and RSS in MB."""
    out = []
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                out.append(
                    {
                        "role": "main" if proc.pid == pid else "worker",
                        "pss": round(info.pss / MB, 1),
                        "uss": round(info.uss / MB, 1),
                        "rss": round(info.rss / MB, 1),
                    }
                )
    return out


class _Peak(PeakSampler):
    """The harness's sampler (PSS every 0.25 s) of one process tree, keeping its processes at the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(lambda: [pid])
        self.pid = pid
        self.processes: list[dict[str, Any]] = []

    def _sample(self) -> None:
        before = self.peak
        super()._sample()
        if self.peak > before:
            self.processes = _processes(self.pid)


def one_round(engines: Engines, workdir: Path, args: argparse.Namespace, nats_url: str) -> dict[str, Any]:
    system = Apprun(workdir, args.dialect, args.workers, nats_url)
    with engines.running(system):
        assert system.proc is not None
        pid = system.proc.pid
        started = tree_pss([pid])  # before any collection exists (no DDL has run yet)
        system.seed(args.records)
        idle = tree_pss([pid])
        idle_processes = _processes(pid)
        by_workload = {}
        with _Peak(pid) as peak:
            for workload in WORKLOADS:
                with _Peak(pid) as this:
                    run_wrk(system.base_url, system.requests()[workload], args.seconds, 64)
                by_workload[workload] = round(this.peak / MB, 1)
        return {
            "started_mb": round(started / MB, 1),
            "idle_mb": round(idle / MB, 1),
            "peak_mb": round(peak.peak / MB, 1),
            "peak_by_workload_mb": by_workload,
            "idle": idle_processes,
            "at_peak": peak.processes,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="the src directory of the apprun to serve (default: PYTHONPATH)")
    parser.add_argument("--dialect", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=2, help="wrk seconds per workload")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    ensure_tools()
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    idle, peak = [], []
    with (
        tempfile.TemporaryDirectory(prefix="apprun-memory-") as tmp,
        stopped_on_exit() as engines,
        engines.running(NatsServer(Path(tmp) / "nats")) as nats,
    ):
        for n in range(args.rounds):
            found = one_round(engines, Path(tmp) / f"round-{n}", args, nats.url)
            idle.append(found["idle_mb"])
            peak.append(found["peak_mb"])
            print(json.dumps({"round": n, "src": os.environ.get("PYTHONPATH", ""), **found}), flush=True)
    print(json.dumps({"median_idle_mb": statistics.median(idle), "median_peak_mb": statistics.median(peak)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
