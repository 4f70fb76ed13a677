"""What a savepoint puts back when its block fails, the same for both adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TxMarks"]


class TxMarks:
    """A transaction's bookkeeping as a savepoint began: ``on_commit`` callbacks, ``tx_state``, notices.

    `restore` drops what the failed block added, as the database drops its writes.
    """

    __slots__ = ("_callbacks", "_kept", "_notices", "_notices_kept", "_state", "_tx_state")

    def __init__(
        self, callbacks: list[Callable[[], None]], tx_state: dict[str, Any], notices: list[str] | None = None
    ) -> None:
        self._callbacks, self._kept = callbacks, len(callbacks)
        self._tx_state, self._state = tx_state, dict(tx_state)
        self._notices, self._notices_kept = notices, len(notices) if notices is not None else 0

    def restore(self) -> None:
        del self._callbacks[self._kept :]
        self._tx_state.clear()
        self._tx_state.update(self._state)
        if self._notices is not None:
            del self._notices[self._notices_kept :]  # a NOTIFY under a rolled-back savepoint is dropped too
