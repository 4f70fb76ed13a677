"""What a delete does to the rows that point at it, read before it, so that each change gets its event.

A relation's ``on_delete: cascade`` or ``set_null`` is carried out by the
database's foreign key, after the rows that would tell an event what it did
are gone. So before a delete, `cascade_effects` follows the relations that
point at the rows going: cascades first, level by level (a reply to a
reply to a deleted comment goes too), then the ``set_null`` rows among
those that stay. The rows it finds are locked on PostgreSQL (like the
delete's own targets), so no row can join between this read and the delete.

It sees what the request's tenant sees: rows of other tenants that point at
a shared (``global``) collection's row are changed by the database as
well, without an event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from apprun.data.schema.model import CollectionDef
from apprun.data.sql.write import WriteCompiler
from apprun.kernel.db import Connection

__all__ = ["Effect", "cascade_effects"]

#: The rows of a collection by id, as the API returns them (`RowStore.records`).
Records = Callable[[CollectionDef, list[str]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Effect:
    """One row the database will change because of the delete: its event's kind, and the row before and after."""

    collection: CollectionDef
    kind: Literal["deleted", "updated"]
    old: dict[str, Any]
    record: dict[str, Any] | None


async def cascade_effects(
    conn: Connection,
    collection: CollectionDef,
    ids: list[str],
    *,
    collections: dict[str, CollectionDef],
    writer: WriteCompiler,
    records: Records,
) -> list[Effect]:
    """The rows deleting ``ids`` of ``collection`` will delete or set to null, in the order to announce them."""
    if not ids:
        return []
    going: dict[str, set[str]] = {collection.name: set(ids)}
    effects: list[Effect] = []
    level: list[tuple[CollectionDef, list[str]]] = [(collection, list(ids))]
    while level:
        found: list[tuple[CollectionDef, list[str]]] = []
        for parent, parent_ids in level:
            for child, field in _referencing(collections, parent, "cascade"):
                stmt = writer.referencing_ids(child, field, parent_ids)
                gone = going.setdefault(child.name, set())
                new_ids = [r[0] for r in await conn.fetch(stmt.sql, *stmt.params) if r[0] not in gone]
                if new_ids:
                    gone.update(new_ids)
                    effects += [Effect(child, "deleted", old, None) for old in await records(child, new_ids)]
                    found.append((child, new_ids))
        level = found
    # Rows that stay but lose a reference; one event per row, whatever number of its fields is nulled.
    nulled: dict[str, dict[str, set[str]]] = {}
    for parent_name, going_ids in going.items():
        for child, field in _referencing(collections, collections[parent_name], "set_null"):
            stmt = writer.referencing_ids(child, field, sorted(going_ids))
            gone = going.get(child.name, set())
            for row in await conn.fetch(stmt.sql, *stmt.params):
                if row[0] not in gone:
                    nulled.setdefault(child.name, {}).setdefault(row[0], set()).add(field)
    for child_name, rows in nulled.items():
        child = collections[child_name]
        for old in await records(child, sorted(rows)):
            effects.append(Effect(child, "updated", old, {**old, **dict.fromkeys(rows[old["id"]])}))
    return effects


def _referencing(
    collections: dict[str, CollectionDef], target: CollectionDef, action: Literal["cascade", "set_null"]
) -> list[tuple[CollectionDef, str]]:
    """The (collection, relation field) pairs that point at ``target`` with ``on_delete: action``."""
    return [
        (c, f.name)
        for c in collections.values()
        for f in c.column_fields
        if f.type == "relation" and f.collection == target.name and f.on_delete == action
    ]
