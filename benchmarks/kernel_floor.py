"""What every apprun request costs over HTTP before it does anything: the kernel's floor.

Serves `harness/floor_app.py`'s fixed body with granian (2 workers, as
``make bench``), bare and behind apprun's kernel middleware, alternately,
and replays one GET with wrk (64 connections) against each; prints the
req/s of each run and the ratio of the medians. A data request can be no
faster than the kernel alone, so the kernel's req/s bounds every read's:
against PocketBase's view (``make bench``'s table) it says how much is left
for the data API's own work.

    python -m benchmarks.kernel_floor [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness.common import Request, free_port, stop_group, wait_http
from benchmarks.harness.load import run_wrk


def _serve(which: str, port: int, workers: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, FLOOR_APP=which, FLOOR_DATA_DIR=str(data_dir))
    for name in list(env):
        if name.startswith(("APPRUN_", "DB_", "DATABASE_", "HTTP_")):
            del env[name]
    binary = str(Path(sys.executable).parent / "granian")
    command = [binary, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-ws", "benchmarks.harness.floor_app:app"]
    log = open(data_dir / f"{which}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rps: dict[str, list[float]] = {"bare": [], "kernel": []}
    with tempfile.TemporaryDirectory(prefix="apprun-floor-") as tmp:
        work = Path(tmp)
        servers = {}
        try:
            for which in rps:
                port = free_port()
                servers[which] = (port, _serve(which, port, args.workers, work))
                wait_http(f"http://127.0.0.1:{port}/alive", timeout=30)
            for _ in range(args.rounds):
                for which, (port, _) in servers.items():
                    run_wrk(f"http://127.0.0.1:{port}", Request("GET", "/view"), 1)  # warm-up
                    result = run_wrk(f"http://127.0.0.1:{port}", Request("GET", "/view"), args.seconds)
                    rps[which].append(result.rps)
        finally:
            for _, proc in servers.values():
                stop_group(proc, grace=15)
    medians = {which: statistics.median(values) for which, values in rps.items()}
    print(json.dumps({"rps": rps, "median": medians, "kernel_over_bare": medians["kernel"] / medians["bare"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
