"""The sweeper: staged bytes an upload left behind when a crash cut it off, removed after a bounded age.

An upload stages its bytes before its row commits; a process killed in
between (kill -9, a lost machine) leaves them staged with no row naming
them. Every worker sweeps once when it starts (a restart after a crash
cleans up) and then every ``STORAGE_SWEEP_INTERVAL_SECONDS``, removing staged
bytes nothing has written to for ``STORAGE_SWEEP_AGE_SECONDS``; an upload
still streaming keeps writing, so it is never taken. ``apprun storage
sweep`` runs one pass by hand. Sweeps in several workers or instances at
once are harmless: a removal that finds nothing is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib

from apprun.kernel.logging import get_logger
from apprun.storage.backends.port import StorageBackend

__all__ = ["Sweeper"]

_log = get_logger("apprun.storage")


class Sweeper:
    def __init__(self, backend: StorageBackend, *, age: float, interval: float) -> None:
        self.backend = backend
        self.age = age
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, age: float | None = None) -> int:
        """One pass: staged bytes untouched for ``age`` seconds (default: the setting) removed; how many."""
        removed = await self.backend.sweep(self.age if age is None else age)
        if removed:
            _log.info("storage_swept", removed=removed, older_than_s=self.age if age is None else age)
        return removed

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="storage-sweeper")

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next pass tries again; the server goes on
                _log.warning("storage_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
