"""The schema revision a serving worker checks at start, without Alembic.

Alembic and SQLAlchemy under it cost a process ~28 MB of memory and 250
modules; serving runs raw SQL through the kernel's `Database` and needs
neither. ``apprun serve`` migrates or checks the schema once, with Alembic,
in a short-lived child process before its workers start
(``kernel.runtime.preflight``), and hands the workers what it found through
the environment (`remember`): the rows of the version table once the schema
was at heads, the state they stand for, and a fingerprint of the revision
files it read. A worker reads the version table with one plain query
(`known_state`); when it holds exactly those rows and the revision files are
the same, the schema is at heads and the worker needs no Alembic. Any other
answer (a database migrated or emptied since, revision files changed under
``--reload``, a worker started by another server than ``apprun serve``)
takes the full path in ``migrate.py``, which imports Alembic then: the same
migration, the same refusal, the same message.

The state is a pure function of the rows and the revision files, so a
remembered state that matches both is the state Alembic would compute.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apprun.kernel.db.port import Database

__all__ = [
    "ENV",
    "VERSION_TABLE",
    "MigrationState",
    "fingerprint",
    "known_state",
    "locations",
    "remember",
    "state_for",
    "stored_revisions",
]

VERSION_TABLE = "apprun_schema_version"
#: Where `remember` leaves the checked state for the workers (internal: set by ``apprun serve``, not a setting).
ENV = "APPRUN_INTERNAL_SCHEMA_STATE"
_KERNEL = "apprun.kernel.db"


@dataclass(frozen=True, slots=True)
class MigrationState:
    """Where the schema is, and where this code needs it.

    ``current`` is the newest applied revision of each branch, in branch
    order (a database from before the branches: its legacy revision, like
    ``("0004",)``); ``heads`` is each branch's newest revision in this code.
    """

    current: tuple[str, ...]
    heads: tuple[str, ...]
    up_to_date: bool

    @property
    def current_text(self) -> str:
        """``current`` for people: ``"kernel_0001, rbac_0001, …"`` or ``"(empty)"``."""
        return ", ".join(self.current) or "(empty)"

    @property
    def heads_text(self) -> str:
        return ", ".join(self.heads)


def locations(migrations: Sequence[str]) -> list[str]:
    """The directories Alembic reads revisions from: the kernel's branch, then each package in ``migrations``."""
    kernel = str(resources.files(_KERNEL) / "migrations" / "versions")
    return [kernel, *(str(resources.files(package)) for package in migrations)]


def fingerprint(migrations: Sequence[str]) -> str:
    """A digest of the revision files (names, sizes, modification times): changes when a revision does.

    Read once per process (a worker's code does not change while it runs; ``--reload`` starts a new one).
    """
    return _fingerprint(tuple(migrations))


@functools.cache
def _fingerprint(migrations: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for location in locations(migrations):
        digest.update(location.encode())
        for path in sorted(Path(location).glob("*.py")):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


async def stored_revisions(db: Database) -> tuple[str, ...]:
    """The rows of the version table, sorted (raises if there is no such table)."""
    async with db.read() as conn:
        rows = await conn.fetch(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
    return tuple(sorted(str(row["version_num"]) for row in rows))


def remember(stored: Sequence[str], state: MigrationState, migrations: Sequence[str]) -> None:
    """Leave, for the workers this process starts, the state that the version table rows ``stored`` stand for.

    Only a schema at heads is remembered: anything else is refused or migrated on the full path.
    """
    if not state.up_to_date:
        return
    os.environ[ENV] = json.dumps(
        {
            "migrations": list(migrations),
            "fingerprint": fingerprint(migrations),
            "stored": sorted(stored),
            "current": list(state.current),
            "heads": list(state.heads),
        }
    )


def _remembered(migrations: Sequence[str]) -> dict[str, Any] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(found, dict) or found.get("migrations") != list(migrations):
        return None
    return found


def state_for(stored: Sequence[str], migrations: Sequence[str]) -> MigrationState | None:
    """The remembered state if the version table holds ``stored`` (and the revision files are unchanged), else None."""
    found = _remembered(migrations)
    if found is None or found.get("stored") != sorted(stored) or found.get("fingerprint") != fingerprint(migrations):
        return None
    return MigrationState(current=tuple(found["current"]), heads=tuple(found["heads"]), up_to_date=True)


async def known_state(db: Database, migrations: Sequence[str]) -> MigrationState | None:
    """The schema's state if `remember` left it and the version table still matches; else None (ask Alembic)."""
    if _remembered(migrations) is None:
        return None
    try:
        stored = await stored_revisions(db)
    except Exception:  # noqa: BLE001 - no version table, or no answer: the full path says what is wrong
        return None
    return state_for(stored, migrations)
