"""The data service: reads and writes on collections, with rules, hooks and events.

`DataService` is the reads (`DataReads`, reads.py) and the writes
(`DataWrites`, writes.py) over one `RowStore` (rows.py), which holds what
both need: the settings, the database, the catalog and RBAC.

Every request runs in one transaction (a read on SQLite takes a pooled
reader instead). On PostgreSQL that transaction first switches to the data
role and sets the tenant — ``set_config('role', …, true)`` and
``set_config('apprun.tenant_id', …, true)`` — so row-level security applies
and both settings end with the transaction, whatever happens: a pooled
connection never carries a tenant into the next request.

Writes emit ``apprun.record.created|updated|deleted`` through the events
outbox in the same transaction, one event per row, carrying the row as the
API returns it (``record``) and, for updates and deletes, the row before
(``old``). Rows a delete's ``on_delete: cascade`` / ``set_null`` removes or
changes are read before the delete and announced too (`apprun.data.cascades`).
"""

from __future__ import annotations

from apprun.data.hooks import DEFAULT, Hooks
from apprun.data.reads import DataReads
from apprun.data.rows import RowStore
from apprun.data.schema.catalog import Catalog
from apprun.data.settings import DataSettings
from apprun.data.writes import DataWrites
from apprun.kernel.db import Database
from apprun.rbac.service import Rbac

__all__ = ["DataService"]


class DataService:
    """Reads (`reads`) and writes (`writes`) on collections; the hooks bound by default run first."""

    def __init__(
        self, settings: DataSettings, db: Database, catalog: Catalog, rbac: Rbac, hooks: Hooks | None = None
    ) -> None:
        self.catalog = catalog
        self.hooks = DEFAULT.merged(hooks)
        rows = RowStore(settings, db, catalog, rbac)
        self.reads = DataReads(rows, self.hooks)
        self.writes = DataWrites(rows, self.hooks)
