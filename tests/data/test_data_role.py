"""The PostgreSQL role data requests run as: set up by every worker at start."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from apprun.data.schema.catalog import Catalog
from apprun.kernel.db import create_database
from apprun.kernel.db.migrate import upgrade
from apprun.kernel.runtime import BootError
from apprun.modules import MIGRATIONS
from apprun.testing.engines import postgres_admin_dsn


async def test_workers_starting_at_once_all_set_up_the_data_role(make_settings: Any, pg_databases: Any) -> None:
    """Seen as "tuple concurrently updated" when granian's workers started together."""
    role = f"apprun_t_role_{uuid.uuid4().hex[:8]}"
    dsn = await pg_databases.create()
    settings = make_settings(database_url=dsn, db_data_role=role)
    await upgrade(settings.database, MIGRATIONS)
    dbs = [create_database(settings) for _ in range(6)]
    await asyncio.gather(*(db.open() for db in dbs))
    try:
        await asyncio.gather(*(Catalog(settings, db).ensure_data_role() for db in dbs))
        async with dbs[0].read() as conn:
            assert await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", role)
            assert await conn.fetchval("SELECT has_table_privilege($1, 'apprun_event_outbox', 'INSERT')", role)
    finally:
        await asyncio.gather(*(db.close() for db in dbs))
        await _drop_roles(dsn, role)


async def test_a_user_who_may_not_create_roles_is_told_what_to_run(make_settings: Any, pg_databases: Any) -> None:
    user = f"apprun_t_user_{uuid.uuid4().hex[:8]}"
    role = f"apprun_t_role_{uuid.uuid4().hex[:8]}"
    dsn = await pg_databases.create()
    admin = await asyncpg.connect(postgres_admin_dsn())
    try:
        await admin.execute(f'CREATE ROLE "{user}" LOGIN NOSUPERUSER NOCREATEROLE')
    finally:
        await admin.close()
    settings = make_settings(database_url=dsn.replace("postgres@", f"{user}@", 1), db_data_role=role)
    db = create_database(settings)
    await db.open()
    try:
        with pytest.raises(BootError) as info:
            await Catalog(settings, db).ensure_data_role()
        assert f'CREATE ROLE "{role}" NOLOGIN' in str(info.value)
        assert "permission denied" in str(info.value)
    finally:
        await db.close()
        await _drop_roles(dsn, user, role)


async def _drop_roles(dsn: str, *names: str) -> None:
    """Drop the test's roles: first what they hold in the test's database, then the roles."""
    admin = await asyncpg.connect(dsn)
    try:
        for name in names:
            if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                await admin.execute(f'DROP OWNED BY "{name}"')
                await admin.execute(f'DROP ROLE "{name}"')
    finally:
        await admin.close()
