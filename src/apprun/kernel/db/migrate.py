"""Schema migrations with Alembic, run programmatically: one branch per module.

The kernel keeps its revisions in ``kernel/db/migrations/versions/`` (branch
``kernel``); every module keeps its own in its ``migrations`` package (one
branch labelled with the module's name). The kernel does not know the
modules: the caller passes their packages (``migrations``, built from the
module list by ``kernel.modules.migration_locations``: every module's,
enabled or not, so a module switched on later finds its tables). `upgrade`
goes to ``heads``; Alembic orders the revisions by ``down_revision`` and by
the ``depends_on`` that foreign keys between modules' tables need.

**Databases from before the branches.** Until the modules had their own
migrations one linear chain, ``0001`` … ``0005``, created every table; it
is kept, frozen, in ``kernel/db/migrations/legacy/``, and used only for such a
database. `upgrade` brings it to ``0005`` with that chain, then replaces its
version row by the revisions marked ``legacy_baseline = True`` (each
module's first ones, which create exactly what the chain had created: a
stamp, no DDL), then upgrades to heads like any other database. All of it in
the one transaction and under the one lock below.

`upgrade` is safe to call from several processes at once (granian workers
starting together, or two apprun instances): on PostgreSQL it holds an
advisory lock for the duration, on SQLite an exclusive file lock beside the
database. When the schema is already at heads it costs one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from apprun.kernel.config import DatabaseConfig
from apprun.kernel.db.revision import VERSION_TABLE, MigrationState, locations

__all__ = [
    "LEGACY_HEAD",
    "VERSION_TABLE",
    "MigrationState",
    "alembic_config",
    "heads",
    "legacy_config",
    "migration_state",
    "state_of",
    "upgrade",
]

# An arbitrary constant: "apprun" in ASCII, the key of the migration advisory lock.
_PG_LOCK_KEY = 0x61707072756E
#: The last revision of the legacy linear chain: what the modules' first revisions start from.
LEGACY_HEAD = "0005"
_HERE = "apprun.kernel.db"


def _config(version_locations: Iterable[str], db: DatabaseConfig | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{_HERE}:migrations")
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(version_locations))
    if db is not None:
        cfg.set_main_option("sqlalchemy.url", db.sqlalchemy_url.replace("%", "%%"))
    return cfg


def _legacy_location() -> list[str]:
    return [str(resources.files(_HERE) / "migrations" / "legacy")]


def alembic_config(db: DatabaseConfig, migrations: Sequence[str]) -> Config:
    """Alembic's configuration: the kernel's branch, then one per package in ``migrations``."""
    return _config(locations(migrations), db)


def legacy_config(db: DatabaseConfig) -> Config:
    """The legacy linear chain (``0001`` … ``0005``), for databases from before the branches only."""
    return _config(_legacy_location(), db)


@functools.cache
def _script(migrations: tuple[str, ...]) -> ScriptDirectory:
    """The revisions (read once per process: they do not change while it runs)."""
    return ScriptDirectory.from_config(_config(locations(migrations), None))


@functools.cache
def _legacy_revisions() -> frozenset[str]:
    legacy = ScriptDirectory.from_config(_config(_legacy_location(), None))
    return frozenset(s.revision for s in legacy.walk_revisions())


def heads(migrations: Sequence[str]) -> tuple[str, ...]:
    """Each branch's newest revision, in branch order (the kernel's, then the modules' in list order)."""
    return tuple(_script(tuple(migrations)).get_heads())


def state_of(stored: Sequence[str], migrations: Sequence[str]) -> MigrationState:
    """The state of a database whose version table holds ``stored`` (``/api/v1/system/info`` reads it)."""
    return _state(_script(tuple(migrations)), _legacy_revisions(), stored)


def _ancestry(script: ScriptDirectory, revisions: Iterable[str], *, dependencies: bool = True) -> set[str]:
    """``revisions`` and everything they stand on: their ``down_revision``s (and ``depends_on``s)."""
    seen: set[str] = set()
    pending = list(revisions)
    while pending:
        rev = pending.pop()
        if rev in seen:
            continue
        seen.add(rev)
        found = script.get_revision(rev)  # raises for an unknown revision (a database newer than this code)
        for ids in (found.down_revision, found.dependencies if dependencies else None):
            if ids:
                pending.extend(parent.revision for parent in script.get_revisions(ids) if parent is not None)
    return seen


def _state(script: ScriptDirectory, legacy: frozenset[str], stored: Sequence[str]) -> MigrationState:
    """Read ``stored`` (the version table's rows) against the code's revisions."""
    branch_heads = tuple(script.get_heads())
    if stored and set(stored) <= legacy:
        return MigrationState(current=tuple(sorted(stored)), heads=branch_heads, up_to_date=False)
    applied = _ancestry(script, stored)
    # Alembic keeps one row per branch, except a branch another one depends on: show each branch's tip.
    below = set().union(*(_ancestry(script, [rev], dependencies=False) - {rev} for rev in applied))
    order = {label: i for i, rev in enumerate(branch_heads) for label in _labels(script, rev)}
    tips = sorted(applied - below, key=lambda rev: (min(order.get(b, len(order)) for b in _labels(script, rev)), rev))
    every = {s.revision for s in script.walk_revisions()}
    return MigrationState(current=tuple(tips), heads=branch_heads, up_to_date=every <= applied)


def _labels(script: ScriptDirectory, rev: str) -> set[str]:
    return set(script.get_revision(rev).branch_labels) or {""}


def _stored(sync_conn: sa.Connection) -> tuple[str, ...]:
    ctx = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE})
    return tuple(ctx.get_current_heads())


def _engine(db: DatabaseConfig) -> AsyncEngine:
    if db.path is not None:
        db.path.parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(db.sqlalchemy_url, poolclass=NullPool)


async def migration_state(db: DatabaseConfig, migrations: Sequence[str]) -> MigrationState:
    """The schema's revisions and the ones this code (the kernel and ``migrations``) expects."""
    engine = _engine(db)
    try:
        async with engine.connect() as conn:
            stored = await conn.run_sync(_stored)
    finally:
        await engine.dispose()
    return state_of(stored, migrations)


@contextlib.contextmanager
def _sqlite_file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(sync_conn: sa.Connection, cfg: Config, step: Any, *args: Any, **kw: Any) -> None:
    cfg.attributes["connection"] = sync_conn
    step(cfg, *args, **kw)


def _baselines(script: ScriptDirectory) -> list[str]:
    """The revisions a database from the legacy chain is stamped at: the marked ones, minus those
    another marked one stands on (Alembic refuses a stamp whose revisions overlap)."""
    marked = [s.revision for s in script.walk_revisions() if getattr(s.module, "legacy_baseline", False)]
    below = set().union(*(_ancestry(script, [rev]) - {rev} for rev in marked))
    return [rev for rev in marked if rev not in below]


def _migrate(sync_conn: sa.Connection, cfg: Config, legacy: Config) -> None:
    """Carry a legacy database over (to 0005, then stamp the baselines), then upgrade to heads."""
    stored = _stored(sync_conn)
    if stored and set(stored) <= _legacy_revisions():
        _run(sync_conn, legacy, command.upgrade, LEGACY_HEAD)
        _run(sync_conn, cfg, command.stamp, _baselines(ScriptDirectory.from_config(cfg)), purge=True)
    _run(sync_conn, cfg, command.upgrade, "heads")


async def upgrade(db: DatabaseConfig, migrations: Sequence[str]) -> MigrationState:
    """Bring the schema to heads (the kernel's branch and ``migrations``'); returns the new state."""
    cfg, legacy = alembic_config(db, migrations), legacy_config(db)
    engine = _engine(db)
    lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if db.dialect == "sqlite":
        lock = _sqlite_file_lock(db.path or Path("apprun.db"))
    try:
        # The file lock blocks a thread, not the event loop.
        await asyncio.to_thread(lock.__enter__)
        try:
            async with engine.connect() as conn:
                if db.dialect == "postgres":
                    await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                    await conn.commit()
                try:
                    state = state_of(await conn.run_sync(_stored), migrations)
                    if not state.up_to_date:
                        await conn.run_sync(_migrate, cfg, legacy)
                        await conn.commit()
                        state = state_of(await conn.run_sync(_stored), migrations)
                finally:
                    if db.dialect == "postgres":
                        await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                        await conn.commit()
        finally:
            lock.__exit__(None, None, None)
    finally:
        await engine.dispose()
    return state
