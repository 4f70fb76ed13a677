"""The database layer: one port over SQLite and PostgreSQL, schema, migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apprun.kernel.db.port import Connection, Database, Dialect, PoolStats, Row

if TYPE_CHECKING:
    from apprun.kernel.config import KernelSettings

__all__ = ["Connection", "Database", "Dialect", "PoolStats", "Row", "create_database"]


def create_database(settings: KernelSettings) -> Database:
    """The adapter for the configured database (not opened yet)."""
    config = settings.database
    if config.dialect == "sqlite":
        from apprun.kernel.db.sqlite import SQLiteDatabase

        path = config.path or settings.data_dir / "apprun.db"
        return SQLiteDatabase(
            path,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout,
            busy_timeout=settings.db_sqlite_busy_timeout,
            statement_timeout=settings.db_statement_timeout,
            inline_budget=settings.db_sqlite_inline_ms / 1000,
            group_commit=settings.db_sqlite_group_commit,
            group_max_members=settings.db_sqlite_group_max,
            group_max_wait=settings.db_sqlite_group_max_ms / 1000,
        )
    from apprun.kernel.db.postgres import PostgresDatabase

    return PostgresDatabase(
        config,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
        application_name=f"apprun@{settings.instance}",
        strict_checkout=settings.db_strict_checkout,
    )
