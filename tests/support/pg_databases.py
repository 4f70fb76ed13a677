"""Throw-away PostgreSQL databases on the machine's server (``APPRUN_TEST_PG_DSN``)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from apprun.testing.engines import postgres_admin_dsn

__all__ = ["PgDatabases"]


def _dsn_for(database: str) -> str:
    parts = urlsplit(postgres_admin_dsn())
    return urlunsplit(parts._replace(path="/" + database))


class PgDatabases:
    """Creates throw-away databases on the shared server and drops them."""

    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"apprun_t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(postgres_admin_dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return _dsn_for(name)

    async def drop_all(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(postgres_admin_dsn())
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()
