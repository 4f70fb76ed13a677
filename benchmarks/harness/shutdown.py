"""Every engine the harness starts is stopped again, however the harness ends.

The engines (apprun, PocketBase, the ceiling, NATS) run in sessions of their
own, so neither a Ctrl-C at the terminal nor a SIGTERM sent to the harness
reaches them: only the harness can stop them. `stopped_on_exit` turns
SIGTERM into an exception (`Terminated`, as SIGINT is `KeyboardInterrupt`),
so every ``finally`` runs, and keeps an `Engines` registry whose
`Engines.running` starts an engine and stops it when its block ends. What is
still registered when the harness leaves — normally, by an error, Ctrl-C or
SIGTERM — is stopped then. A stop is never cut short by a signal: one that
arrives meanwhile is raised once the stop is done.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Protocol, TypeVar

__all__ = ["Engine", "Engines", "Terminated", "stopped_on_exit"]

#: The signals that end the harness: Ctrl-C, and what ``timeout`` or a test runner sends.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(SystemExit):
    """SIGTERM arrived: leave by the way every exception leaves, stopping what runs, and exit with 128 + 15.

    A `SystemExit` rather than a plain `BaseException`: asyncio re-raises a
    `SystemExit` raised inside a task, where any other exception would only
    be stored on that task and the harness would run on.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class Engine(Protocol):
    """Anything the harness starts as a process of its own: `common.System`, `NatsServer`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


E = TypeVar("E", bound=Engine)


class Engines:
    """The engines started and not yet stopped, and the signals held while one stops."""

    def __init__(self) -> None:
        self._running: list[Engine] = []
        self._holding = 0
        self._pending: signal.Signals | None = None

    @contextlib.contextmanager
    def running(self, engine: E) -> Iterator[E]:
        """Start ``engine``; stop it when the block ends, however it ends."""
        self._running.append(engine)  # before start(): a start cut short leaves a process too
        try:
            engine.start()
            yield engine
        finally:
            with self._held():
                engine.stop()
                self._running.remove(engine)

    def stop_all(self) -> None:
        """Stop every engine still registered, the last started first; raise the first error after trying all."""
        errors: list[Exception] = []
        with self._held():
            while self._running:
                engine = self._running.pop()
                try:
                    engine.stop()
                except Exception as exc:  # noqa: BLE001 - the others must still be stopped; raised below
                    errors.append(exc)
        if errors:
            raise errors[0]

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._pending is not None:
            pending, self._pending = self._pending, None
            _raise(pending)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - signal.signal's signature
        """The handler of `SIGNALS`: raise at once, or once the stop under way is done."""
        if self._holding:
            if self._pending is None:
                self._pending = signal.Signals(signum)
            return
        _raise(signal.Signals(signum))


def _raise(signum: signal.Signals) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


@contextlib.contextmanager
def stopped_on_exit() -> Iterator[Engines]:
    """A registry of engines, all stopped when the block ends; SIGINT and SIGTERM raise inside it.

    Only the main thread can install signal handlers, which is where the harness runs.
    """
    engines = Engines()
    previous = {signum: signal.signal(signum, engines.on_signal) for signum in SIGNALS}
    try:
        yield engines
    finally:
        try:
            engines.stop_all()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
