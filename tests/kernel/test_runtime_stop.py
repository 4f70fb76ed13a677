"""Stopping apprun: a module that fails or hangs does not keep the others open."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apprun.kernel import runtime as runtime_module
from apprun.kernel.runtime import Runtime


async def test_a_hanging_or_failing_module_does_not_hold_the_others(
    make_settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runtime_module, "STOP_TIMEOUT", 0.3)
    rt = Runtime(make_settings(database_url=f"sqlite:///{tmp_path / 'apprun.db'}"))
    await rt.start()
    stopped: list[str] = []
    released = asyncio.Event()

    async def stubborn(_: Runtime) -> None:
        while not released.is_set():  # ignores cancellation, as a stuck client library might
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue

    async def failing(_: Runtime) -> None:
        raise RuntimeError("broken module")

    async def polite(_: Runtime) -> None:
        stopped.append("polite")

    rt.on_stop(polite)  # stops last: after the two broken ones
    rt.on_stop(failing)
    rt.on_stop(stubborn)
    try:
        await asyncio.wait_for(rt.stop(), 10)
    finally:
        released.set()  # let the test's loop close
    assert stopped == ["polite"]
    assert not rt.started
    out = capsys.readouterr().out
    assert "stop_step_timeout" in out and "stubborn" in out
    assert "stop_step_failed" in out and "broken module" in out
