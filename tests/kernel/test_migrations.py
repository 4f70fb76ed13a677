"""Alembic migrations: one branch per module; reach heads on both dialects, match the metadata, run
safely in parallel; a database of the legacy chain is carried over to the same schema."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from apprun.kernel.config import DatabaseConfig
from apprun.kernel.db.migrate import (
    LEGACY_HEAD,
    VERSION_TABLE,
    alembic_config,
    heads,
    migration_state,
    state_of,
    upgrade,
)
from apprun.kernel.modules import load_tables
from apprun.modules import MIGRATIONS, MODULES, Settings
from tests.support.migrations import build_legacy, run_sync

BRANCHES = ("kernel", *(module.name for module in MODULES))


def _differences(sync_conn: sa.Connection) -> list[Any]:
    ctx = MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
    return list(compare_metadata(ctx, load_tables(MODULES)))


def _described(sync_conn: sa.Connection) -> dict[str, Any]:
    """Every table as the database reflects it: columns, keys, constraints, indexes (names included)."""
    inspector = sa.inspect(sync_conn)
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        if name == VERSION_TABLE:
            continue
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in inspector.get_columns(name)
            ],
            "pk": inspector.get_pk_constraint(name),
            "fks": sorted(
                (fk["name"] or "", fk["constrained_columns"], fk["referred_table"], fk["options"])
                for fk in inspector.get_foreign_keys(name)
            ),
            "unique": sorted((u["name"] or "", u["column_names"]) for u in inspector.get_unique_constraints(name)),
            "indexes": sorted((i["name"] or "", i["column_names"], i["unique"]) for i in inspector.get_indexes(name)),
        }
    return tables


async def test_upgrade_reaches_heads_and_is_idempotent(settings: Settings) -> None:
    db = settings.database
    before = await migration_state(db, MIGRATIONS)
    assert before.current == ()
    assert before.current_text == "(empty)"
    assert not before.up_to_date
    after = await upgrade(db, MIGRATIONS)
    assert after.up_to_date
    # One revision per branch, the kernel's first, then the modules' in list order.
    assert after.current == after.heads == heads(MIGRATIONS)
    assert (await upgrade(db, MIGRATIONS)).current == after.current
    assert (await migration_state(db, MIGRATIONS)).up_to_date


async def test_migrated_schema_matches_the_metadata(settings: Settings) -> None:
    await upgrade(settings.database, MIGRATIONS)
    differences = await run_sync(settings.database, _differences)
    assert differences == [], "a tables.py and the migrations disagree; write a migration"


async def test_concurrent_upgrades_do_not_collide(settings: Settings) -> None:
    # Several workers starting at once each call upgrade(); the lock serialises them.
    states = await asyncio.gather(*(upgrade(settings.database, MIGRATIONS) for _ in range(4)))
    assert {s.current for s in states} == {heads(MIGRATIONS)}
    assert all(s.up_to_date for s in states)


async def test_concurrent_upgrades_of_a_legacy_database_carry_it_over_once(settings: Settings) -> None:
    db = settings.database
    await build_legacy(db, "0004")
    states = await asyncio.gather(*(upgrade(db, MIGRATIONS) for _ in range(4)))
    assert all(s.up_to_date for s in states)
    assert await run_sync(db, _differences) == []


async def test_a_legacy_database_reports_its_revision_and_needs_a_migration(settings: Settings) -> None:
    db = settings.database
    await build_legacy(db, "0004")
    state = await migration_state(db, MIGRATIONS)
    assert state.current == ("0004",)
    assert not state.up_to_date
    assert state.heads_text == ", ".join(heads(MIGRATIONS))
    after = await upgrade(db, MIGRATIONS)
    assert after.up_to_date
    assert after.current == heads(MIGRATIONS)


async def test_the_legacy_path_and_the_new_path_build_the_same_schema(
    settings: Settings, make_settings: Any, pg_databases: Any, tmp_path: Any
) -> None:
    """From the legacy chain (then carried over) and from the modules' branches: table for table, the same."""
    carried = settings.database
    await build_legacy(carried, LEGACY_HEAD)
    await upgrade(carried, MIGRATIONS)
    if carried.dialect == "sqlite":
        fresh = make_settings(database_url=f"sqlite:///{tmp_path / 'fresh' / 'apprun.db'}").database
    else:
        fresh = make_settings(database_url=await pg_databases.create()).database
    await upgrade(fresh, MIGRATIONS)
    legacy_schema, new_schema = await run_sync(carried, _described), await run_sync(fresh, _described)
    assert sorted(legacy_schema) == sorted(new_schema)
    for table in new_schema:
        assert legacy_schema[table] == new_schema[table], table
    assert await run_sync(carried, _differences) == []


def test_each_branch_is_labelled_with_its_module() -> None:
    script = ScriptDirectory.from_config(alembic_config(DatabaseConfig(dialect="sqlite"), MIGRATIONS))
    labels = [sorted(script.get_revision(head).branch_labels) for head in heads(MIGRATIONS)]
    assert labels == [[branch] for branch in BRANCHES]
    for revision in script.walk_revisions():
        # Revisions are named <module>_<NNNN>, so `apprun migrate --status` says whose they are.
        assert revision.revision.startswith(f"{sorted(revision.branch_labels)[0]}_"), revision.revision


def test_an_empty_database_needs_every_branch() -> None:
    state = state_of([], MIGRATIONS)
    assert state.heads == heads(MIGRATIONS)
    assert not state.up_to_date
