"""What a savepoint puts back when its block fails, the same for both adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TxMarks"]


class TxMarks:
    """A transaction's bookkeeping as a savepoint began: ``on_commit`` callbacks, ``tx_state``, queues.

    The queues are what waits for the ``COMMIT`` on PostgreSQL: the channels
    to notify and the statements sent with it. `restore` drops what the
    failed block added, as the database drops its writes.
    """

    __slots__ = ("_callbacks", "_kept", "_queues", "_state", "_tx_state")

    def __init__(self, callbacks: list[Callable[[], None]], tx_state: dict[str, Any], *queues: list[Any]) -> None:
        self._callbacks, self._kept = callbacks, len(callbacks)
        self._tx_state, self._state = tx_state, dict(tx_state)
        self._queues = [(queue, len(queue)) for queue in queues]

    def restore(self) -> None:
        del self._callbacks[self._kept :]
        self._tx_state.clear()
        self._tx_state.update(self._state)
        for queue, kept in self._queues:
            del queue[kept:]  # a NOTIFY or a queued statement under a rolled-back savepoint is dropped too
