"""``apprun collections``: define the data API's collections from a file.

``apprun collections apply FILE`` creates or changes collections to match a
YAML or JSON file; applying it twice changes nothing (see docs/data.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apprun.data.settings import DataSettings
from apprun.kernel.commands import console, fail, fail_with, preflight, settings_of

if TYPE_CHECKING:
    from apprun.data.schema.catalog import ApplyResult
    from apprun.data.schema.model import CollectionDef

__all__ = ["collections_app"]

collections_app = typer.Typer(help="Define the data API's collections.", no_args_is_help=True)

_DONE = {"create": "created", "alter": "changed", "unchanged": "unchanged", "drop": "dropped"}


@collections_app.command("apply")
def collections_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a YAML or JSON file: one definition, a list, or {collections: [...]}")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the steps and the SQL; change nothing")] = False,
    allow_destructive: Annotated[
        bool, typer.Option("--allow-destructive", help="allow steps that delete data (dropping a field)")
    ] = False,
) -> None:
    """Create or change collections to match a file (idempotent: applying it twice changes nothing)."""
    if not file.is_file():
        fail(f"{file} does not exist", "give the path of a YAML file with collection definitions")
    settings = settings_of(ctx, DataSettings)
    preflight(settings, ctx)
    from apprun.data.schema.schema_file import apply_file
    from apprun.kernel.errors import ApiError

    def report(collection: CollectionDef, result: ApplyResult) -> None:
        if dry_run:
            console.print(f"[bold]{collection.name}[/]: would {result.operation}")
            for step in result.changes:
                console.print(f"  - {step['step']}{' [red](destructive)[/]' if step['destructive'] else ''}")
            if result.sql:
                typer.echo(result.sql)
            return
        version = f" (version {result.version})" if result.version else ""
        console.print(f"[green]{collection.name}[/]: {_DONE.get(result.operation, result.operation)}{version}")
        for step in result.changes:
            console.print(f"  - {step['step']}")

    try:
        with console.status(f"applying {file} …", spinner="dots"):
            asyncio.run(
                apply_file(settings, file, dry_run=dry_run, allow_destructive=allow_destructive, progress=report)
            )
    except ApiError as exc:
        fail_with(exc, f"\n{json.dumps(exc.details, indent=2, ensure_ascii=False)}" if exc.details else "")
