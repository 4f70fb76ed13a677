"""Alembic migrations: reach head on both dialects, match the metadata, run safely in parallel."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apprun.kernel.db.migrate import VERSION_TABLE, head_revision, migration_state, upgrade
from apprun.kernel.db.schema import metadata
from apprun.modules import Settings


async def test_upgrade_reaches_head_and_is_idempotent(settings: Settings) -> None:
    db = settings.database
    before = await migration_state(db)
    assert before.current is None
    assert not before.up_to_date
    after = await upgrade(db)
    assert after.current == head_revision(db)
    assert (await upgrade(db)).current == after.current
    assert (await migration_state(db)).up_to_date


async def test_migrated_schema_matches_the_metadata(settings: Settings) -> None:
    db = settings.database
    await upgrade(db)

    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return list(compare_metadata(ctx, metadata))

    engine = create_async_engine(db.sqlalchemy_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == [], "schema.py and the migrations disagree; write a migration"


async def test_concurrent_upgrades_do_not_collide(settings: Settings) -> None:
    # Several workers starting at once each call upgrade(); the lock serialises them.
    states = await asyncio.gather(*(upgrade(settings.database) for _ in range(4)))
    assert {s.current for s in states} == {head_revision(settings.database)}
