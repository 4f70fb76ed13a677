"""The catalog: every collection's definition, its table, its history.

Definitions live in ``apprun_collections`` (JSON) and every change is
recorded in ``apprun_collection_history`` with the steps it took. Applying a
definition creates or migrates the table and records the definition in one
transaction, so the table and its definition never disagree. Destructive
steps (dropping a field or a collection) need ``allow_destructive``.

Each process keeps the definitions in memory and checks the catalog's
version at most once a second (and at once after a change it made itself),
so a change reaches every worker within a second.

On PostgreSQL the data role (``DB_DATA_ROLE``) is made sure of at start: a
role without login that data requests switch to, which owns nothing and
bypasses nothing, so row-level security applies to it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from apprun.data.schema.model import CollectionDef
from apprun.data.schema.validation import NOW, validate_value
from apprun.data.settings import DataSettings
from apprun.events.outbox import allow_emitting, emit_grant
from apprun.kernel.db import Database
from apprun.kernel.db.meta import counter
from apprun.kernel.errors import ApiError, BadRequest, Conflict, NotFound
from apprun.kernel.logging import get_logger
from apprun.kernel.times import utcnow

if TYPE_CHECKING:
    # SQLAlchemy, Alembic and the DDL code load on the first collection change, not in every serving worker.
    from sqlalchemy.ext.asyncio import AsyncEngine

    from apprun.data.schema.ddl import Change

__all__ = ["ApplyResult", "Catalog", "parse_definition"]

#: Tries at setting up the data role before apprun refuses to start.
_ROLE_ATTEMPTS = 5

_log = get_logger("apprun.data.schema.catalog")
#: The kernel's meta counter bumped with every change to the catalog.
CATALOG_COUNTER = "collections_version"


def parse_definition(body: Any) -> CollectionDef:
    """A definition from JSON/YAML, or 400 ``data.invalid_collection`` with pydantic's findings.

    Defaults are checked like a client's values, so a default that every insert
    would refuse (an enum default outside its values, ``"1"`` for an integer)
    is refused here, once, rather than on every insert.
    """
    try:
        collection = CollectionDef.model_validate(body)
    except ValidationError as exc:
        problems = [
            {"at": ".".join(str(p) for p in err["loc"]), "message": str(err["msg"]).removeprefix("Value error, ")}
            for err in exc.errors()
        ]
        raise BadRequest("data.invalid_collection", details={"problems": problems}) from None
    bad_defaults = []
    for index, f in enumerate(collection.fields):
        if f.default is None or (f.type == "datetime" and f.default == NOW):
            continue
        default = f.default.isoformat() if isinstance(f.default, dt.date) else f.default
        try:
            validate_value(f, default, dialect="sqlite", locale="en")
        except BadRequest as exc:
            found = (exc.details or {}).get("fields", {}).get(f.name, [{}])
            bad_defaults.append({"at": f"fields.{index}.default", "message": found[0].get("message", "not valid")})
    if bad_defaults:
        raise BadRequest("data.invalid_collection", details={"problems": bad_defaults})
    return collection


@dataclass(frozen=True)
class ApplyResult:
    collection: str
    operation: str
    changes: list[dict[str, Any]]
    sql: str | None = None
    version: int | None = None
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "collection": self.collection,
            "operation": self.operation,
            "changes": self.changes,
            "applied": self.applied,
            "version": self.version,
        }
        if self.sql is not None:
            out["sql"] = self.sql
        return out


@dataclass
class _Cache:
    version: int = -1
    checked: float = 0.0
    collections: dict[str, CollectionDef] = field(default_factory=dict)


def _stored(collection: CollectionDef) -> str:
    data = collection.model_dump(mode="json", exclude_defaults=True)
    for f in data.get("fields", []):
        f.pop("renamed_from", None)  # a migration hint, spent once applied
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class Catalog:
    def __init__(self, settings: DataSettings, db: Database, *, refresh_every: float = 1.0) -> None:
        self.settings = settings
        self.db = db
        self.dialect = db.dialect
        self.role = settings.db_data_role
        self.refresh_every = refresh_every
        self._cache = _Cache()
        self._lock = asyncio.Lock()
        self._engine: AsyncEngine | None = None

    # --- reading -----------------------------------------------------------
    async def get(self, name: str) -> CollectionDef | None:
        await self._fresh()
        return self._cache.collections.get(name)

    async def require(self, name: str) -> CollectionDef:
        found = await self.get(name)
        if found is None:
            raise NotFound("data.unknown_collection", params={"name": name})
        return found

    async def all(self) -> dict[str, CollectionDef]:
        """Every definition by name. Shared, not copied: read it, never change it (a refresh replaces it whole)."""
        await self._fresh()
        return self._cache.collections

    def current(self) -> dict[str, CollectionDef]:
        """The definitions as last loaded, without checking for news (no I/O).

        For code that holds a connection: `all` may refresh, which takes a
        second connection from the pool — and when every connection is held
        by a request doing the same, nobody gets one until the pool times out.
        A request calls `require`/`all` first, before its transaction, so this
        is the snapshot it started with.
        """
        return self._cache.collections

    @property
    def version(self) -> int:
        return self._cache.version

    async def _fresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._cache.checked < self.refresh_every:
            return
        async with self._lock:
            if not force and time.monotonic() - self._cache.checked < self.refresh_every:
                return
            async with self.db.read() as conn:
                version = await counter(conn, CATALOG_COUNTER)
                if version != self._cache.version or force:
                    rows = await conn.fetch("SELECT name, definition FROM apprun_collections")
                    self._cache.collections = {
                        r["name"]: CollectionDef.model_validate_json(r["definition"]) for r in rows
                    }
                    self._cache.version = version
            self._cache.checked = time.monotonic()

    # --- the data role (PostgreSQL) ------------------------------------------
    async def ensure_data_role(self) -> None:
        """Create the role data requests run as, and grant what it needs (PostgreSQL).

        Every worker runs this at start. Workers of one deployment take turns
        (an advisory lock), grants already in place are not repeated, and a
        catalog write that collides with another database's apprun starting
        at the same moment ("tuple concurrently updated": roles are
        cluster-wide) is tried again.
        """
        if self.dialect != "postgres":
            return
        last: Exception | None = None
        for attempt in range(_ROLE_ATTEMPTS):
            try:
                await self._set_up_data_role()
                return
            except ApiError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported below as a BootError with what to do
                last = exc
                await asyncio.sleep(0.05 * (attempt + 1))
        from apprun.kernel.runtime import BootError

        role = self.role
        raise BootError(
            f"cannot set up the PostgreSQL role {role!r} that data requests run as ({last}). Create it once as a "
            f'superuser: CREATE ROLE "{role}" NOLOGIN; GRANT "{role}" TO <apprun\'s user>; '
            f'GRANT USAGE ON SCHEMA public TO "{role}"; {emit_grant(role)};'
        ) from last

    async def _set_up_data_role(self) -> None:
        role = self.role
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('apprun.data_role', 0))")
            await conn.execute(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                f'CREATE ROLE "{role}" NOLOGIN; END IF; '
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
            if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", role):
                await conn.execute(f'GRANT "{role}" TO CURRENT_USER')
            if not await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'USAGE')", role):
                await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            # Writes emit their events in the same transaction, under this role (the events module grants it).
            await allow_emitting(conn, role)

    # --- changing ----------------------------------------------------------------
    def _sa_engine(self) -> AsyncEngine:
        if self._engine is None:
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import NullPool

            self._engine = create_async_engine(self.settings.database.sqlalchemy_url, poolclass=NullPool)
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def _check_references(
        self, collection: CollectionDef, pending: dict[str, CollectionDef] | None = None
    ) -> None:
        known = {**(pending or {}), **await self.all()}
        for f in collection.fields:
            if f.type != "relation" or not f.collection:
                continue
            target = collection if f.collection == collection.name else known.get(f.collection)
            if target is None and not f.many:
                raise BadRequest("data.unknown_collection", params={"name": f.collection}, details={"field": f.name})
            if target is not None and collection.scope == "global" and target.scope == "tenant":
                raise BadRequest("data.global_to_tenant_relation", params={"field": f.name})

    async def plan(
        self, collection: CollectionDef, pending: dict[str, CollectionDef] | None = None
    ) -> tuple[str, list[Change], CollectionDef | None]:
        from apprun.data.schema.ddl import plan_create
        from apprun.data.schema.diff import diff

        current = await self.get(collection.name)
        await self._check_references(collection, pending)
        if current is None:
            return "create", plan_create(collection, self.role), None
        return "alter", diff(current, collection, self.role), current

    async def apply(
        self,
        collection: CollectionDef,
        *,
        actor: str | None,
        allow_destructive: bool = False,
        dry_run: bool = False,
        pending: dict[str, CollectionDef] | None = None,
    ) -> ApplyResult:
        """Create or migrate ``collection`` to this definition (idempotent).

        ``pending``: collections a dry run may assume exist (the rest of a schema file).
        """
        await self._fresh(force=True)
        operation, changes, current = await self.plan(collection, pending if dry_run else None)
        described = [{"step": c.description, "destructive": c.destructive} for c in changes]
        definition_changed = current is None or _stored(current) != _stored(collection)
        if dry_run:
            from apprun.data.schema.ddl import render_sql

            return ApplyResult(collection.name, operation, described, sql=render_sql(changes, self.dialect))
        if not changes and not definition_changed:
            return ApplyResult(collection.name, "unchanged", [], version=None, applied=False)
        if any(c.destructive for c in changes) and not allow_destructive:
            raise BadRequest(
                "data.destructive_change",
                details={"steps": [c["step"] for c in described if c["destructive"]]},
                hint="data.destructive_change_hint",
            )
        version = await self._write(collection, operation, changes, described, actor)
        return ApplyResult(collection.name, operation, described, version=version, applied=True)

    async def drop(
        self, name: str, *, actor: str | None, allow_destructive: bool = False, dry_run: bool = False
    ) -> ApplyResult:
        await self._fresh(force=True)
        current = await self.require(name)
        dependants = [
            other.name
            for other in (await self.all()).values()
            if other.name != name and any(name in {f.collection, f.through} for f in other.fields)
        ]
        if dependants:
            raise Conflict("data.collection_in_use", params={"name": name}, details={"used_by": sorted(dependants)})
        from apprun.data.schema.ddl import plan_drop, render_sql

        changes = plan_drop(current)
        described = [{"step": c.description, "destructive": c.destructive} for c in changes]
        if dry_run:
            return ApplyResult(name, "drop", described, sql=render_sql(changes, self.dialect))
        if not allow_destructive:
            raise BadRequest("data.destructive_change", details={"steps": [c["step"] for c in described]})
        await self._write(current, "drop", changes, described, actor, drop=True)
        return ApplyResult(name, "drop", described, applied=True)

    async def _write(
        self,
        collection: CollectionDef,
        operation: str,
        changes: list[Change],
        described: list[dict[str, Any]],
        actor: str | None,
        *,
        drop: bool = False,
    ) -> int:
        import sqlalchemy as sa

        from apprun.data.schema.changes import write_change

        now = utcnow()
        run = functools.partial(
            write_change,
            dialect=self.dialect,
            collection=collection.name,
            changes=changes,
            definition=None if drop else _stored(collection),
            operation=operation,
            described=described,
            actor=actor,
            now=now,
            counter=CATALOG_COUNTER,
        )
        engine = self._sa_engine()
        try:
            async with engine.begin() as conn:
                version = await conn.run_sync(run)
        except ApiError:
            raise
        except sa.exc.DBAPIError as exc:
            _log.warning("collection_change_failed", collection=collection.name, error=str(exc.orig))
            raise Conflict(
                "data.migration_failed", params={"name": collection.name}, details={"reason": str(exc.orig)[:500]}
            ) from exc
        _log.info("collection_changed", collection=collection.name, operation=operation, version=version)
        await self._fresh(force=True)
        return version

    async def history(self, name: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT version, operation, changes, applied_by, applied_at FROM apprun_collection_history "
                "WHERE collection = $1 ORDER BY version",
                name,
            )
        from apprun.kernel.times import isoformat, to_datetime

        return [
            {
                "version": r["version"],
                "operation": r["operation"],
                "changes": json.loads(r["changes"]),
                "applied_by": r["applied_by"],
                "applied_at": isoformat(to_datetime(r["applied_at"])),
            }
            for r in rows
        ]
