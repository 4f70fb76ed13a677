"""``POST /object/list/{bucket}``: one folder of a bucket, as Supabase Storage lists it.

Keys have no real folders: a folder is the common prefix of the keys under
it. The listed folder's direct objects come back as objects, and each
deeper prefix once, as a folder entry (``id`` and ``metadata`` null), named
relative to the listed folder. ``search`` keeps the entries whose name
starts with it (case-insensitive); then the entries are sorted, and
``offset``/``limit`` page through them.

The folder's keys are read in SQL, in key order, in pages of `_PAGE` rows,
so memory holds one page and the entries kept so far (one per direct object
and folder of the listed folder). Part 2 may push the folder grouping into
SQL for folders of millions of objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from apprun.kernel.db import Connection
from apprun.kernel.errors import BadRequest
from apprun.storage.keys import folder_prefix
from apprun.storage.rows import OBJECT_COLUMNS, Bucket, object_of, scope_sql

__all__ = ["MAX_LIMIT", "ListOptions", "list_folder"]

MAX_LIMIT = 1000
_PAGE = 1000
_SORTABLE = ("name", "created_at", "updated_at", "last_accessed_at")


@dataclass(frozen=True, slots=True)
class ListOptions:
    prefix: str = ""
    limit: int = 100
    offset: int = 0
    sort_column: str = "name"
    sort_order: Literal["asc", "desc"] = "asc"
    search: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_LIMIT or self.offset < 0:
            raise BadRequest("storage.invalid_list_options", params={"max": MAX_LIMIT})
        if self.sort_column not in _SORTABLE or self.sort_order not in ("asc", "desc"):
            raise BadRequest("storage.invalid_list_options", params={"max": MAX_LIMIT})


async def list_folder(conn: Connection, bucket: Bucket, options: ListOptions) -> list[dict[str, Any]]:
    prefix = folder_prefix(options.prefix)
    search = options.search.lower()
    entries: dict[str, dict[str, Any]] = {}
    where, args = scope_sql(bucket.tenant_id, 5)
    after = ""
    while True:
        # A prefix compared as a substring (no LIKE escapes to get wrong), paged by key after the last one seen:
        # the comparison and the order use the same collation, so no key is skipped or seen twice.
        rows = await conn.fetch(
            f"SELECT {OBJECT_COLUMNS} FROM apprun_storage_objects WHERE bucket_id = $1 "  # noqa: S608
            f"AND substr(name, 1, $2) = $3 AND name > $4 AND {where} ORDER BY name LIMIT {_PAGE}",
            bucket.id,
            len(prefix),
            prefix,
            after,
            *args,
        )
        for row in rows:
            stored = object_of(row)
            rest = stored.name[len(prefix) :]
            if not rest.lower().startswith(search):
                continue
            head, slash, _ = rest.partition("/")
            if slash:
                entries.setdefault(head + "/", _folder(head))
            else:
                entries[rest] = stored.list_view() | {"name": rest}
        if len(rows) < _PAGE:
            break
        after = rows[-1]["name"]
    ordered = sorted(entries.values(), key=lambda e: _sort_key(e, options.sort_column))
    if options.sort_order == "desc":
        ordered.reverse()
    return ordered[options.offset : options.offset + options.limit]


def _folder(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "id": None,
        "updated_at": None,
        "created_at": None,
        "last_accessed_at": None,
        "metadata": None,
    }


def _sort_key(entry: dict[str, Any], column: str) -> tuple[str, str]:
    # Folders carry no times: they sort by name, before the objects (as Supabase's search function does).
    value = entry.get(column) or "" if column != "name" else entry["name"]
    return (str(value), entry["name"])
