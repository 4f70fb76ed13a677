"""``apprun collections apply schema.yaml``: collections kept in a file, applied idempotently.

The file holds one definition, a list of them, or ``{collections: [...]}``
(YAML or JSON). Definitions are applied in dependency order — a relation's
target before the collection pointing at it, a join collection after both
ends — whatever their order in the file, each in its own transaction.
Applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from apprun.data.schema.catalog import ApplyResult, Catalog, parse_definition
from apprun.data.schema.model import CollectionDef
from apprun.data.settings import DataSettings
from apprun.kernel.db import create_database
from apprun.kernel.errors import BadRequest

__all__ = ["apply_file", "load_file", "ordered"]


def load_file(path: Path) -> list[CollectionDef]:
    """The definitions in a YAML/JSON file (``BadRequest`` naming the problem if it has none or bad ones)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadRequest("data.invalid_collection", details={"file": str(path), "problems": [str(exc)]}) from None
    if isinstance(document, dict) and "collections" in document:
        document = document["collections"]
    items = document if isinstance(document, list) else [document]
    if not items or not all(isinstance(i, dict) for i in items):
        raise BadRequest("data.invalid_collection", details={"file": str(path), "problems": ["no definitions"]})
    out = [parse_definition(item) for item in items]
    names = [c.name for c in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadRequest("data.invalid_collection", details={"problems": [f"defined twice: {duplicates}"]})
    return out


def ordered(collections: list[CollectionDef]) -> list[CollectionDef]:
    """Targets of relations first (a cycle keeps file order for the rest)."""
    by_name = {c.name: c for c in collections}
    done: list[CollectionDef] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(c: CollectionDef) -> None:
        if c.name in seen or c.name in visiting:
            return
        visiting.add(c.name)
        for f in c.fields:
            if f.type == "relation" and not f.many and f.collection in by_name and f.collection != c.name:
                visit(by_name[f.collection])
        visiting.discard(c.name)
        seen.add(c.name)
        done.append(c)

    for c in collections:
        visit(c)
    return done


async def apply_file(
    settings: DataSettings,
    path: Path,
    *,
    dry_run: bool,
    allow_destructive: bool,
    progress: Callable[[CollectionDef, ApplyResult], None] | None = None,
) -> list[ApplyResult]:
    """Apply every definition of ``path``; stops at the first refusal (earlier ones stay applied)."""
    collections = ordered(load_file(path))
    db = create_database(settings)
    await db.open()
    catalog = Catalog(settings, db)
    results: list[ApplyResult] = []
    try:
        await catalog.ensure_data_role()
        for collection in collections:
            result = await catalog.apply(
                collection,
                actor=None,
                allow_destructive=allow_destructive,
                dry_run=dry_run,
                pending={c.name: c for c in collections},
            )
            results.append(result)
            if progress is not None:
                progress(collection, result)
    finally:
        await catalog.close()
        await db.close()
    return results
