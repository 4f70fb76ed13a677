"""``apprun storage``: the storage module from the command line.

``apprun storage sweep`` removes staged bytes that uploads cut off by a
crash left behind (see sweeper.py), with the backend the server uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from apprun.kernel.commands import console, modules_for, preflight, settings_of
from apprun.storage.settings import StorageSettings

if TYPE_CHECKING:
    from apprun.kernel.module import Module

__all__ = ["storage_app", "sweep_staged"]

storage_app = typer.Typer(help="Object storage.", no_args_is_help=True)


@storage_app.command("sweep")
def storage_sweep(
    ctx: typer.Context,
    older_than: Annotated[
        float | None,
        typer.Option(help="seconds staged bytes must be untouched to go (default: STORAGE_SWEEP_AGE_SECONDS)", min=0),
    ] = None,
) -> None:
    """Remove staged bytes that uploads cut off by a crash left behind."""
    settings = settings_of(ctx, StorageSettings)
    preflight(settings, ctx)
    age = settings.storage_sweep_age_seconds if older_than is None else older_than
    removed = asyncio.run(sweep_staged(settings, modules_for(ctx, "storage"), age))
    console.print(f"[green]removed {removed} staged upload{'' if removed == 1 else 's'}[/] untouched for {age:g} s")


async def sweep_staged(settings: StorageSettings, modules: Sequence[type[Module]], age: float) -> int:
    """One sweep with the server's backend: ``modules`` are storage and the modules it requires."""
    from apprun.kernel.modules import build
    from apprun.kernel.runtime import Runtime
    from apprun.storage.sweeper import Sweeper

    runtime = Runtime(settings)
    await runtime.db.open()
    built = build(modules, runtime)
    try:
        return await built.wiring.get(Sweeper).sweep(age)
    finally:
        await built.stop(runtime)
        await runtime.db.close()
