"""The kernel's ``apprun_meta`` table, for the modules: named counters every process can compare.

``apprun_meta`` holds facts about the deployment (installation time,
instance id) and counters a module bumps so that every process notices a
change (data: ``collections_version``, bumped with each collection change and
compared by every worker at most once a second). The table is the kernel's:
modules read and bump their counters through these functions, never by SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

    import sqlalchemy as sa

    from apprun.kernel.db.port import Connection

__all__ = ["bump_counter", "counter"]


async def counter(conn: Connection, key: str) -> int:
    """The counter ``key`` (0 before its first bump)."""
    return int(await conn.fetchval("SELECT value FROM apprun_meta WHERE key = $1", key) or 0)


def bump_counter(conn: sa.Connection, key: str, at: dt.datetime) -> None:
    """Add one to the counter ``key``, in ``conn``'s transaction (a SQLAlchemy one: the change it counts runs there).

    The first bump creates it at 1.
    """
    import sqlalchemy as sa  # loaded already: the caller's change runs on SQLAlchemy (serving never bumps)

    # SQLite keeps times as ISO text (as the SQLite adapter writes them); the driver's own conversion is deprecated.
    when: dt.datetime | str = at if conn.dialect.name == "postgresql" else at.isoformat(timespec="microseconds")
    bumped = conn.execute(
        sa.text(
            "UPDATE apprun_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT), updated_at = :t WHERE key = :k"
        ),
        {"t": when, "k": key},
    ).rowcount
    if not bumped:
        conn.execute(
            sa.text("INSERT INTO apprun_meta (key, value, updated_at) VALUES (:k, '1', :t)"), {"k": key, "t": when}
        )
