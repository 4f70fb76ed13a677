"""Each module owns its tables and migrations, and no code names a table another module owns.

The owners come from the code itself: each module's ``tables.py`` (its
``Module.tables``), the kernel's ``kernel/db/schema.py`` plus Alembic's
version table. A module that needs another's rows asks that module's service
or query functions (tenancy's ``queries.py``), or a port it declares.
"""

from __future__ import annotations

import importlib
import re
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

import apprun
from apprun.kernel.db import schema as kernel_schema
from apprun.kernel.db.migrate import VERSION_TABLE
from apprun.kernel.module import Module
from apprun.kernel.modules import load_tables
from apprun.modules import MODULES

SRC = Path(apprun.__file__).parent
_TABLE_NAME = re.compile(r"\bapprun_[a-z0-9_]+\b")
_CREATED = re.compile(r'op\.create_table\(\s*"(\w+)"')


def _tables_of(source: ModuleType) -> set[str]:
    return {value.name for value in vars(source).values() if isinstance(value, sa.Table)}


def _owners() -> dict[str, set[str]]:
    """Package name -> the tables it owns (``kernel`` included)."""
    owners = {"kernel": _tables_of(kernel_schema) | {VERSION_TABLE}}
    for module in MODULES:
        assert module.tables is not None, module.name
        owners[module.name] = _tables_of(importlib.import_module(module.tables))
    return owners


def _declarations(path: Path) -> bool:
    """Schema declarations, where a foreign key names another module's table on purpose."""
    parts = path.relative_to(SRC).parts
    return path.name == "tables.py" or "migrations" in parts or parts[-2:] == ("db", "schema.py")


def test_every_table_has_exactly_one_owner() -> None:
    owners = _owners()
    seen: dict[str, str] = {}
    for owner, tables in owners.items():
        for table in tables:
            assert table not in seen, f"{table} is declared by {seen[table]} and {owner}"
            seen[table] = owner
    assert set(seen) - {VERSION_TABLE} == set(load_tables(MODULES).tables)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_a_module_declares_its_tables_and_its_migrations(module: type[Module]) -> None:
    assert module.tables == f"apprun.{module.name}.tables"
    assert module.migrations == f"apprun.{module.name}.migrations"
    tables = _tables_of(importlib.import_module(module.tables))
    assert tables, f"{module.tables} defines no table"
    created = {
        name
        for path in Path(str(resources.files(module.migrations))).glob("*.py")
        for name in _CREATED.findall(path.read_text())
    }
    assert created == tables, "a module's migrations create exactly its own tables"


def test_no_code_names_a_table_another_module_owns() -> None:
    owners = _owners()
    every = set().union(*owners.values())
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if _declarations(path):
            continue
        parts = path.relative_to(SRC).parts
        # app.py, cli.py, modules.py and the test helpers own no table, so they may name none.
        mine = owners.get(parts[0], set()) if len(parts) > 1 else set()
        for name in sorted(set(_TABLE_NAME.findall(path.read_text())) & (every - mine)):
            found.append(f"{path.relative_to(SRC)} names {name}")
    assert found == [], "ask the owning module (its service, query functions or a port) instead:\n" + "\n".join(found)
