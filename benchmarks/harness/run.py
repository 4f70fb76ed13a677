"""``make bench``: every system, every workload, one run, one report.

Each system is started on free loopback ports, seeded with the same data,
loaded one at a time (the others stopped, so they cost nothing), and
stopped. Every HTTP workload gets a warm-up, then ``runs`` measured runs of
which the median is kept. The load generator's own CPU and the system's
CPU are recorded next to every run, because on 2 cores they compete.
However the run ends — done, failed, Ctrl-C or SIGTERM — every engine still
running is stopped (`benchmarks.harness.shutdown`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from apprun.testing.engines import NatsServer
from benchmarks.harness import inprocess
from benchmarks.harness.apprun_system import ARGON2_NOTE, Apprun
from benchmarks.harness.ceiling import Ceiling
from benchmarks.harness.common import WORKLOADS, EngineError, LoadResult, System, tree_cpu_seconds, tree_pss, tree_rss
from benchmarks.harness.load import ensure_tools, median_result, run_rate, run_wrk
from benchmarks.harness.pocketbase import PocketBase
from benchmarks.harness.report import markdown
from benchmarks.harness.shutdown import Engines, Terminated, stopped_on_exit

ROOT = Path(__file__).resolve().parents[2]
LOGIN_MIN_SECONDS = 4
console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Mode:
    """How much to measure: ``full`` for RESULTS.md, ``quick`` for a 2-minute look, ``smoke`` for the tests."""

    name: str
    records: int
    duration: int  # seconds per measured run (wrk counts whole seconds)
    runs: int
    warmup: int
    rate: int  # requests/s of the fixed-rate run
    rate_seconds: int
    events: int
    authz_seconds: float
    workers: int  # apprun's and the ceiling's granian workers, unless calibrated
    calibrate: tuple[int, ...]  # worker counts tried on apprun (the fastest is kept)
    #: wrk connections for logins. Smoke mode proves the plumbing, not speed: 64 logins hashing at once
    #: on a machine busy with the test suite finish together, after its short run has ended (0 answers).
    login_connections: int = 64
    #: Seconds of records created at a steady `EVENTS_RATE` per second, for the events' lag at that rate.
    events_steady_seconds: float = 10.0


MODES = {
    "full": Mode("full", 10_000, 4, 2, 2, 500, 30, 5_000, 2.0, 2, (1, 2, 3)),
    "quick": Mode("quick", 10_000, 2, 1, 0, 500, 5, 500, 1.0, 2, (), events_steady_seconds=3.0),
    "smoke": Mode("smoke", 100, 1, 1, 0, 50, 2, 50, 0.2, 1, (), login_connections=4, events_steady_seconds=0.5),
}


class PeakSampler:
    """Samples a system's memory (PSS and RSS sums) in the background; keeps the peaks."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self.peak = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_pss(self._pids()))
        self.peak_rss = max(self.peak_rss, tree_rss(self._pids()))

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Bench:
    """One benchmark run: holds the mode, the work directory, the engines running and what was measured."""

    def __init__(self, mode: Mode, workdir: Path, engines: Engines) -> None:
        self.mode = mode
        self.workdir = workdir
        self.engines = engines
        self.results: dict[str, Any] = {
            "http": {},  # workload -> system -> LoadResult (as dict)
            "fixed_rate": {},  # system -> LoadResult
            "memory": {},  # system -> {idle_mb, load_mb}
            "labels": {},  # system -> label
            "notes": {},
        }

    # --- measuring ------------------------------------------------------

    def measure(self, system: System, key: str, workload: str) -> LoadResult:
        request = system.requests()[workload]
        mode = self.mode
        # A login takes tens of milliseconds of hashing, and 64 of them queue up: give it time to settle.
        duration = max(mode.duration, LOGIN_MIN_SECONDS) if workload == "login" else mode.duration
        connections = mode.login_connections if workload == "login" else 64
        if mode.warmup:
            with contextlib.suppress(EngineError):  # a warm-up too short to finish a login is still a warm-up
                run_wrk(system.base_url, request, mode.warmup, connections)
        runs = []
        for _ in range(mode.runs):
            before = tree_cpu_seconds(system.pids())
            result = run_wrk(system.base_url, request, duration, connections)
            result.sut_cpu_s = tree_cpu_seconds(system.pids()) - before
            runs.append(result)
        best = median_result(runs)
        self.results["http"].setdefault(workload, {})[key] = asdict(best)
        console.print(
            f"  {workload:<12} {key:<20} {best.rps:>9,.0f} req/s  P99 {best.p99_ms:>7.1f} ms  "
            f"errors {best.errors}  (wrk CPU {best.loadgen_cpu_s:.1f} s, system CPU {best.sut_cpu_s:.1f} s)"
        )
        return best

    def fixed_rate(self, system: System, key: str) -> None:
        result = run_rate(system.base_url, system.requests()["list_auth"], self.mode.rate, self.mode.rate_seconds)
        self.results["fixed_rate"][key] = asdict(result)
        console.print(
            f"  fixed rate   {key:<20} {result.rps:>9,.0f} req/s  P50 {result.p50_ms:.1f} / P95 "
            f"{result.p95_ms or 0:.1f} / P99 {result.p99_ms:.1f} ms  errors {result.errors}"
        )

    def _http(self, system: System, configs: dict[str, Callable[[], None]], fixed_rate: str | None = None) -> None:
        """All workloads on a started, seeded system; ``configs`` name variants switched on between runs.

        The fixed-rate run (for the config named ``fixed_rate``) comes before the writes: a burst of creates
        leaves events for the relay to publish, and 64 connections of logins a queue of password hashes, and
        either would spill into whatever runs next.
        """
        idle, idle_rss = tree_pss(system.pids()), tree_rss(system.pids())
        with PeakSampler(system.pids) as peak:
            for workload in WORKLOADS:
                if workload == "create" and fixed_rate is not None:
                    configs[fixed_rate]()
                    self.fixed_rate(system, fixed_rate)
                for key, switch in configs.items():
                    switch()
                    self.measure(system, key, workload)
        for key in configs:
            self.results["memory"][key] = {
                "idle_mb": idle / 2**20,
                "load_mb": peak.peak / 2**20,
                "idle_rss_mb": idle_rss / 2**20,
                "load_rss_mb": peak.peak_rss / 2**20,
            }
            self.results["labels"][key] = system.label
        console.print(
            f"  memory (PSS, all processes): {idle / 2**20:.0f} MB idle, {peak.peak / 2**20:.0f} MB at peak under load"
        )

    # --- systems ------------------------------------------------------

    def pocketbase(self) -> None:
        pb = PocketBase(self.workdir / "pocketbase")
        console.print(f"[bold]PocketBase[/] {pb.version()} on {pb.base_url}")
        with self.engines.running(pb):
            seeded = _timed(lambda: pb.seed(self.mode.records))
            console.print(f"  seeded {self.mode.records:,} records per collection in {seeded:.1f} s")
            configs = {"pocketbase_tuned": lambda: pb.tune(True), "pocketbase": lambda: pb.tune(False)}
            self._http(pb, configs, fixed_rate="pocketbase_tuned")
            self.results["labels"]["pocketbase"] = f"{pb.label} (defaults: totals counted, request log on)"
            self.results["labels"]["pocketbase_tuned"] = f"{pb.label} (skipTotal=1, request log off)"
            self.results["notes"]["pocketbase_hash"] = pb.hash_note

    def apprun(self, dialect: str, nats_url: str) -> None:
        mode = self.mode
        system = Apprun(self.workdir / f"apprun-{dialect}", dialect, mode.workers, nats_url)
        console.print(f"[bold]apprun[/] on {dialect} at {system.base_url}")
        with self.engines.running(system):
            seeded = _timed(lambda: system.seed(mode.records))
            console.print(f"  seeded {mode.records:,} records per collection in {seeded:.1f} s")
            if mode.calibrate:
                self._calibrate(system)
            key = system.name
            self._http(system, {key: lambda: None}, fixed_rate=key)
            system.stop_process()  # apprun's processes only: the ceiling runs next, on its data
            ceiling = Ceiling(system)
            console.print(f"[bold]ceiling[/] on {dialect} ({ceiling.workers} workers)")
            with self.engines.running(ceiling):
                self._http(ceiling, {ceiling.name: lambda: None})
        self.results["notes"]["apprun_hash"] = ARGON2_NOTE

    def _calibrate(self, system: Apprun) -> None:
        """Try each worker count on the authenticated list; keep the fastest."""
        found: dict[int, float] = {}
        for workers in self.mode.calibrate:
            system.restart(workers)
            run_wrk(system.base_url, system.requests()["list_auth"], 1)
            found[workers] = run_wrk(system.base_url, system.requests()["list_auth"], 3).rps
            console.print(f"  {workers} workers: {found[workers]:,.0f} req/s on list_auth")
        best = max(found, key=lambda w: found[w])
        self.results["notes"][f"workers_{system.dialect}"] = {str(k): v for k, v in found.items()}
        system.restart(best)
        console.print(f"  keeping {best} workers")

    def run(self) -> dict[str, Any]:
        ensure_tools()
        with self.engines.running(NatsServer(self.workdir / "nats")) as nats:
            self.pocketbase()
            for dialect in ("sqlite", "postgres"):
                self.apprun(dialect, nats.url)
            console.print("[bold]authorization[/] decisions in-process")
            self.results["authorization"] = inprocess.authorization(self.workdir / "authz", self.mode.authz_seconds)
            console.print(f"  {self.results['authorization']}")
            console.print(f"[bold]events[/]: {self.mode.events:,} through the outbox and JetStream")
            # A NATS server of its own: the one above holds the systems' streams and consumers.
            with self.engines.running(NatsServer(self.workdir / "nats-events")) as events_nats:
                self.results["events"] = inprocess.events(
                    self.workdir / "events", events_nats.url, self.mode.events, self.mode.events_steady_seconds
                )
            console.print(f"  {self.results['events']}")
        return self.results


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": model, "os": f"{platform.system()} {platform.release()}"}


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    # The report's own file does not make the code dirty.
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/RESULTS.md"]
    dirty = subprocess.run(status, capture_output=True, text=True, cwd=ROOT, check=False)
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--results-md", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--command", default="make bench", help="the command recorded in the report")
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    started = dt.datetime.now(dt.UTC)
    # The engines are stopped before their work directory is removed.
    try:
        with tempfile.TemporaryDirectory(prefix="apprun-bench-") as tmp, stopped_on_exit() as engines:
            results = Bench(mode, Path(tmp), engines).run()
    except (Terminated, KeyboardInterrupt) as exc:
        console.print(f"[red]{'terminated' if isinstance(exc, Terminated) else 'interrupted'}[/]: every engine stopped")
        raise
    results["meta"] = {
        "mode": asdict(mode),
        "command": args.command,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds()),
        "machine": machine(),
        "commit": git_commit(),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{started.strftime('%Y-%m-%dT%H%M%S')}-{mode.name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    with open(args.results_md, "a", encoding="utf-8") as fh:
        fh.write("\n" + table)
    print(table)
    console.print(f"[green]results written[/]: {out} and {args.results_md}")
    return 0
