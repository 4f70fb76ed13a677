"""Schema migrations with Alembic, run programmatically.

`upgrade` is safe to call from several processes at once (granian workers
starting together, or two apprun instances): on PostgreSQL it holds an
advisory lock for the duration, on SQLite an exclusive file lock beside the
database. When the schema is already at head it costs one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
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

__all__ = ["MigrationState", "alembic_config", "head_revision", "migration_state", "upgrade"]

# An arbitrary constant: "apprun" in ASCII, the key of the migration advisory lock.
_PG_LOCK_KEY = 0x61707072756E
VERSION_TABLE = "apprun_schema_version"


@dataclass(frozen=True, slots=True)
class MigrationState:
    current: str | None
    head: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(db: DatabaseConfig) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "apprun.kernel.db:migrations")
    cfg.set_main_option("sqlalchemy.url", db.sqlalchemy_url.replace("%", "%%"))
    return cfg


def head_revision(db: DatabaseConfig) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()


@contextlib.contextmanager
def _sqlite_file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _current(sync_conn: sa.Connection) -> str | None:
    ctx = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def _engine(db: DatabaseConfig) -> AsyncEngine:
    if db.path is not None:
        db.path.parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(db.sqlalchemy_url, poolclass=NullPool)


async def migration_state(db: DatabaseConfig) -> MigrationState:
    """The schema's revision and the revision this code expects."""
    engine = _engine(db)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    return MigrationState(current=current, head=head_revision(db))


def _upgrade_sync(sync_conn: sa.Connection, cfg: Config, target: str) -> None:
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, target)


async def upgrade(db: DatabaseConfig, target: str = "head") -> MigrationState:
    """Bring the schema to ``target`` (default: head); returns the new state."""
    cfg = alembic_config(db)
    head = ScriptDirectory.from_config(cfg).get_current_head()
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
                    current = await conn.run_sync(_current)
                    if target != "head" or current != head:
                        await conn.run_sync(_upgrade_sync, cfg, target)
                        await conn.commit()
                    current = await conn.run_sync(_current)
                finally:
                    if db.dialect == "postgres":
                        await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                        await conn.commit()
        finally:
            lock.__exit__(None, None, None)
    finally:
        await engine.dispose()
    return MigrationState(current=current, head=head)
