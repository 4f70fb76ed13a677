"""Databases as older apprun versions left them: the legacy migration chain, run by hand."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apprun.kernel.config import DatabaseConfig
from apprun.kernel.db.migrate import legacy_config

__all__ = ["build_legacy", "run_sync"]


async def run_sync(db: DatabaseConfig, fn: Any, *args: Any) -> Any:
    """``fn(sync_connection, *args)`` on a connection of its own, committed."""
    engine = create_async_engine(db.sqlalchemy_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn, *args)
            await conn.commit()
            return result
    finally:
        await engine.dispose()


def _legacy_upgrade(sync_conn: sa.Connection, db: DatabaseConfig, target: str) -> None:
    cfg = legacy_config(db)
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, target)


async def build_legacy(db: DatabaseConfig, target: str) -> None:
    """A database as apprun made it before the modules had their own migrations: the linear chain to ``target``."""
    if db.path is not None:
        db.path.parent.mkdir(parents=True, exist_ok=True)
    await run_sync(db, _legacy_upgrade, db, target)
