"""SQL from a test, on the database of the app under test.

The in-process test client serves the app on an event loop of its own, so a
test cannot borrow the app's pool; these helpers open apprun's own database
adapter for the same settings on the test's loop, for one statement.
"""

from __future__ import annotations

from typing import Any

from apprun.kernel.db import create_database
from apprun.modules import Settings

__all__ = ["execute", "rows"]


async def rows(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The result rows as dicts (``$1`` placeholders on both dialects)."""
    db = create_database(settings)
    await db.open()
    try:
        async with db.read() as conn:
            return [{key: row[key] for key in row.keys()} for row in await conn.fetch(sql, *args)]  # noqa: SIM118
    finally:
        await db.close()


async def execute(settings: Settings, sql: str, *args: Any) -> int:
    """Run one statement in a transaction; the affected row count."""
    db = create_database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            return await conn.execute(sql, *args)
    finally:
        await db.close()
