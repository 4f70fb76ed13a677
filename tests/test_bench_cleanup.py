"""A harness that is killed (SIGTERM from a timeout, Ctrl-C) stops every engine it started first.

The engines run in sessions of their own, so nothing but the harness can
stop them. Each scenario starts the harness in smoke mode, waits until it
reports an engine up, takes every process below it, sends the signal, and
asserts that none of those processes outlives the harness. The registry
behind it (`benchmarks.harness.shutdown`) is tested on its own first.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from benchmarks.harness.shutdown import Terminated, stopped_on_exit

ROOT = Path(__file__).resolve().parents[1]
#: Generous: apprun starts after PocketBase's 14 measured runs, a minute or more on a loaded 2-core machine.
READY_S = 240
#: Stopping takes seconds; its worst case is a graceful stop that times out (30 s for apprun) before SIGKILL.
EXIT_S = 90


class _Engine:
    """An engine that only records what was asked of it; its stop can run ``during_stop`` first."""

    def __init__(self, log: list[str], name: str, during_stop: Callable[[], None] = lambda: None) -> None:
        self.log, self.name, self.during_stop = log, name, during_stop

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.during_stop()
        self.log.append(f"stop {self.name}")


def test_sigterm_stops_every_running_engine_and_exits_143() -> None:
    log: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as raised, stopped_on_exit() as engines:
        with engines.running(_Engine(log, "a")):
            pass
        with engines.running(_Engine(log, "b")), engines.running(_Engine(log, "c")):
            signal.raise_signal(signal.SIGTERM)
            pytest.fail("SIGTERM did not raise")
    assert raised.value.code == 128 + signal.SIGTERM
    assert log == ["start a", "stop a", "start b", "start c", "stop c", "stop b"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the harness's only while it runs


def test_a_signal_during_a_stop_is_raised_once_the_stop_is_done() -> None:
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt), stopped_on_exit() as engines:
        with engines.running(_Engine(log, "a", lambda: signal.raise_signal(signal.SIGINT))):
            pass
        log.append("went on")  # never: the Ctrl-C is not lost
    assert log == ["start a", "stop a"]


def test_a_failing_stop_does_not_keep_the_others_running() -> None:
    log: list[str] = []

    def fail() -> None:
        raise RuntimeError("stop failed")

    with (
        pytest.raises(RuntimeError, match="stop failed"),
        stopped_on_exit() as engines,
        engines.running(_Engine(log, "a")),
        engines.running(_Engine(log, "b", fail)),
    ):
        pass
    # b's stop failed at the end of its block (and again on the way out, where it was still registered): a still stopped
    assert log == ["start a", "start b", "stop a"]


def _engines(*names: str) -> Callable[[list[psutil.Process]], bool]:
    """True once every named engine is among the processes (by process name: nats-server, pocketbase, apprun)."""

    def found(procs: list[psutil.Process]) -> bool:
        seen = set()
        for proc in procs:
            try:
                seen.add(proc.name())
            except psutil.Error:
                continue
        return set(names) <= seen

    return found


SCENARIOS = [
    # signal, what stderr shows once the engine under test serves, the engines that must be running then
    pytest.param(
        signal.SIGINT, r"PocketBase .*\n\s+seeded", _engines("nats-server", "pocketbase"), id="ctrl-c-pocketbase"
    ),
    pytest.param(
        signal.SIGTERM, r"apprun on sqlite .*\n\s+seeded", _engines("nats-server", "apprun"), id="sigterm-apprun"
    ),
]


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {seconds:g} s")
        time.sleep(0.1)


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE  # is_running also sees PID reuse
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.timeout(READY_S + EXIT_S + 60)
@pytest.mark.parametrize(("signum", "ready", "engines_up"), SCENARIOS)
def test_a_killed_harness_leaves_no_engine_running(
    tmp_path: Path,
    signum: signal.Signals,
    ready: str,
    engines_up: Callable[[list[psutil.Process]], bool],
) -> None:
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        harness = subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--mode", "smoke", "--results-dir", str(tmp_path),
             "--results-md", str(tmp_path / "RESULTS.md")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    below: list[psutil.Process] = []
    try:

        def serving() -> bool:
            if harness.poll() is not None:
                raise AssertionError(f"the harness exited early ({harness.returncode}):\n{stderr.read_text()[-3000:]}")
            if not re.search(ready, stderr.read_text(errors="replace")):
                return False
            below[:] = psutil.Process(harness.pid).children(recursive=True)
            return engines_up(below)

        _wait(serving, READY_S, f"the harness serving ({ready!r})")
        harness.send_signal(signum)
        try:
            harness.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the harness did not exit within {EXIT_S} s of {signum.name}") from None
        _wait(lambda: all(_gone(proc) for proc in below), 10, "every process the harness started gone")
        text = stderr.read_text(errors="replace")
        assert "every engine stopped" in text, text[-3000:]
        if signum == signal.SIGTERM:
            assert harness.returncode == 128 + signal.SIGTERM, text[-3000:]
        else:
            assert harness.returncode != 0
    finally:  # never leave anything behind, whatever failed above
        if harness.poll() is None:
            with contextlib.suppress(psutil.Error):
                below += psutil.Process(harness.pid).children(recursive=True)
            harness.kill()
        for proc in below:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        harness.wait(10)
