"""apprun as a real server process (granian), for tests that need one.

`LiveServer` runs ``python -m apprun serve`` with an environment of the test's
choosing on a free port, waits for ``/.well-known/alive``, collects its
stdout (JSON log lines) and stops it with SIGTERM, like an orchestrator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from apprun.testing.engines import free_port

__all__ = ["LiveServer"]

_TEST_APP = "tests.support.test_app:asgi"


class LiveServer:
    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        *,
        workers: int = 1,
        with_test_routes: bool = False,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "APPRUN_", "OTEL_"))},
            "APPRUN_DATA_DIR": str(workdir / "data"),
            "HTTP_PORT": str(self.port),
            "HTTP_WORKERS": str(workers),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            **(env or {}),
        }
        self.args = [sys.executable, "-m", "apprun", "serve"]
        if with_test_routes:
            self.args += ["--app", _TEST_APP]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, expect_ready: bool = True) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir, start_new_session=True
        )
        log.close()
        if not expect_ready:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"apprun exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/.well-known/alive", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"apprun did not come up in {timeout:g} s:\n{self.output()}")

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                # Shown by conftest's slow-teardown summary: why apprun did not stop.
                tail = "\n".join(self.output().splitlines()[-60:])
                print(f"apprun needed SIGKILL: still running {timeout:g} s after SIGTERM; its log ends:\n{tail}")
        code = self.proc.returncode
        self.proc = None
        return code

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON line the server printed (other lines are skipped)."""
        records = []
        for raw in self.output().splitlines():
            line = raw.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records

    def wait_for_log(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first log record ``match`` accepts, waiting for it to be written.

        The access log line is written after the reply is sent, so a test that
        reads the log right after its request must wait for the line.
        """
        deadline = time.monotonic() + timeout
        while True:
            for record in self.log_records():
                if match(record):
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching log line in {timeout:g} s:\n{self.output()}")
            time.sleep(0.05)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
