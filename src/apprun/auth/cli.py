"""``apprun admin``: platform administration from the command line.

``apprun admin create EMAIL`` makes a platform admin (or promotes an existing
user), with the same services the server runs. There is no default password.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from apprun.auth.settings import AuthSettings
from apprun.kernel.commands import console, fail, fail_with, modules_for, preflight, settings_of

if TYPE_CHECKING:
    from apprun.kernel.module import Module

__all__ = ["admin_app", "create_platform_admin"]

admin_app = typer.Typer(help="Platform administration.", no_args_is_help=True)


@admin_app.command("create")
def admin_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the admin's email address")],
    password: Annotated[
        str | None, typer.Option(help="the password (else APPRUN_ADMIN_PASSWORD, else a prompt)")
    ] = None,
) -> None:
    """Create a platform admin (or make an existing user one). There is no default password."""
    settings = settings_of(ctx, AuthSettings)
    secret = password or os.environ.get("APPRUN_ADMIN_PASSWORD")
    if not secret:
        if not sys.stdin.isatty():
            fail("no password given", "pass --password, set APPRUN_ADMIN_PASSWORD, or run in a terminal to be asked")
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    preflight(settings, ctx)
    from apprun.kernel.errors import ApiError

    try:
        user_id, created = asyncio.run(create_platform_admin(settings, modules_for(ctx, "auth"), email, secret))
    except ApiError as exc:
        fail_with(exc, f" ({exc.details})" if exc.details else "")
    verb = "created" if created else "promoted to platform admin"
    console.print(f"[green]{email} {verb}[/] (user id {user_id})")


async def create_platform_admin(
    settings: AuthSettings, modules: Sequence[type[Module]], email: str, password: str
) -> tuple[str, bool]:
    """The server's services for one call: ``modules`` are auth and the modules it requires."""
    from apprun.auth.admin import Admin
    from apprun.kernel.modules import build
    from apprun.kernel.runtime import Runtime

    runtime = Runtime(settings)
    await runtime.db.open()
    built = build(modules, runtime)
    try:
        return await built.wiring.get(Admin).create_platform_admin(email, password)
    finally:
        await built.stop(runtime)
        await runtime.db.close()
