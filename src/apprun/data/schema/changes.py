"""A collection change, written: the DDL and the catalog's own rows in one SQLAlchemy transaction.

Imported by the catalog only when a collection is created, changed or
dropped (with SQLAlchemy, Alembic's operations and the DDL planning), so a
serving worker that only reads and writes records never loads them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from apprun.data.schema.ddl import Change, apply_changes
from apprun.kernel.db.meta import bump_counter
from apprun.kernel.db.port import Dialect
from apprun.kernel.ids import new_id

__all__ = ["write_change"]

_PG_DDL_LOCK = 0x61707072756E04


def write_change(
    conn: sa.Connection,
    *,
    dialect: Dialect,
    collection: str,
    changes: list[Change],
    definition: str | None,
    operation: str,
    described: list[dict[str, Any]],
    actor: str | None,
    now: dt.datetime,
    counter: str,
) -> int:
    """Apply ``changes`` and record the new ``definition`` (None: dropped) in ``conn``'s transaction; its version."""
    if dialect == "postgres":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_DDL_LOCK})
    apply_changes(conn, changes, dialect)
    version = _next_version(conn, collection)
    ts = now if dialect == "postgres" else now.isoformat(timespec="microseconds")
    _store_definition(conn, collection, definition, version=version, actor=actor, ts=ts)
    _record_history(
        conn, collection, definition, version=version, operation=operation, described=described,
        actor=actor, ts=ts,
    )  # fmt: skip
    # Every process compares this counter with the one it loaded (the catalog's `_fresh`).
    bump_counter(conn, counter, now)
    return version


def _next_version(conn: sa.Connection, name: str) -> int:
    sql = "SELECT coalesce(max(version), 0) FROM apprun_collection_history WHERE collection = :n"
    return int(conn.execute(sa.text(sql), {"n": name}).scalar_one()) + 1


def _store_definition(
    conn: sa.Connection, name: str, definition: str | None, *, version: int, actor: str | None, ts: Any
) -> None:
    """The collection's current definition (``None``: it was dropped)."""
    if definition is None:
        conn.execute(sa.text("DELETE FROM apprun_collections WHERE name = :n"), {"n": name})
        return
    updated = conn.execute(
        sa.text(
            "UPDATE apprun_collections SET definition = :d, version = :v, updated_by = :a, "
            "updated_at = :t WHERE name = :n"
        ),
        {"d": definition, "v": version, "a": actor, "t": ts, "n": name},
    ).rowcount
    if not updated:
        conn.execute(
            sa.text(
                "INSERT INTO apprun_collections (name, definition, version, updated_by, created_at, "
                "updated_at) VALUES (:n, :d, :v, :a, :t, :t)"
            ),
            {"n": name, "d": definition, "v": version, "a": actor, "t": ts},
        )


def _record_history(
    conn: sa.Connection, name: str, definition: str | None, *, version: int, operation: str,
    described: list[dict[str, Any]], actor: str | None, ts: Any,
) -> None:  # fmt: skip
    conn.execute(
        sa.text(
            "INSERT INTO apprun_collection_history (id, collection, version, operation, changes, definition, "
            "applied_by, applied_at) VALUES (:i, :c, :v, :o, :ch, :d, :a, :t)"
        ),
        {
            "i": new_id(),
            "c": name,
            "v": version,
            "o": operation,
            "ch": json.dumps(described),
            "d": definition,
            "a": actor,
            "t": ts,
        },
    )
