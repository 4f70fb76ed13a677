"""The benchmark harness runs end to end in its smallest mode (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.harness.common import WORKLOADS

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("apprun_sqlite", "apprun_postgres", "pocketbase", "pocketbase_tuned", "ceiling_sqlite", "ceiling_postgres")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_harness_measures_every_system_and_writes_its_report(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--mode", "smoke", "--results-dir", str(tmp_path), "--results-md", str(md),
         "--command", "pytest tests/test_bench_smoke.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=580, env={**os.environ, "COLUMNS": "200"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    [report] = tmp_path.glob("*-smoke.json")
    results = json.loads(report.read_text())
    for workload in WORKLOADS:
        measured = results["http"][workload]
        assert set(measured) == set(SYSTEMS), workload
        for system, run in measured.items():
            assert run["requests"] > 0, (workload, system)
            assert run["errors"] == 0, (workload, system, run)
            assert run["loadgen_cpu_s"] > 0, (workload, system)
    assert set(results["fixed_rate"]) == {"apprun_sqlite", "apprun_postgres", "pocketbase_tuned"}
    assert all(run["errors"] == 0 for run in results["fixed_rate"].values())
    assert results["memory"]["apprun_sqlite"]["load_mb"] > 0
    assert results["authorization"]["cached_per_s"] > 0
    assert results["events"]["delivered"] == results["meta"]["mode"]["events"]
    text = md.read_text()
    assert "make bench" in text and "pytest tests/test_bench_smoke.py" in text
    assert "| list_public |" in text and results["meta"]["commit"] in text
