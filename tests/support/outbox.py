"""Reading the events outbox (``apprun_event_outbox``) from a test.

``db`` is always the test's own `Database` (the ``db`` fixture, or a pool the
test opened on its own loop): the in-process app's pool belongs to the app's
event loop, so a test never reads through it.
"""

from __future__ import annotations

from apprun.kernel.db import Database

__all__ = ["events_since", "outbox_mark", "unpublished"]


async def outbox_mark(db: Database) -> str:
    """The newest event's id ("" when there is none): what `events_since` counts from.

    Event ids are time-ordered and strictly increasing within a process
    (kernel/ids.py), and the in-process app runs in the test's process: every
    event written after the mark sorts after it, in the order it was written.
    """
    async with db.read() as conn:
        newest = await conn.fetchval("SELECT id FROM apprun_event_outbox ORDER BY id DESC LIMIT 1")
    return "" if newest is None else str(newest)


async def events_since(db: Database, mark: str) -> list[str]:
    """The types of the events written after ``mark``, in the order they were written."""
    async with db.read() as conn:
        rows = await conn.fetch("SELECT type FROM apprun_event_outbox WHERE id > $1 ORDER BY id", mark)
    return [str(row["type"]) for row in rows]


async def unpublished(db: Database) -> int:
    """Events the relay has not published yet."""
    async with db.read() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE published_at IS NULL"))
