"""What ``apprun`` sub-commands share: consoles, failing with a hint, the settings, the preflight.

``apprun`` (cli.py) puts a `CommandContext` on the root typer context; a
module's command group (its `Module.cli`) takes ``ctx: typer.Context`` and
reads its settings section with ``settings_of(ctx, MySettings)``, without
knowing how the composed settings are loaded. Heavy modules are imported
inside the commands, as cli.py does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from apprun.kernel.config import KernelSettings, section
from apprun.kernel.errors import ApiError
from apprun.kernel.module import Module
from apprun.kernel.modules import needed_for

__all__ = [
    "CommandContext",
    "console",
    "err_console",
    "fail",
    "fail_with",
    "modules_for",
    "preflight",
    "settings_of",
]

S = TypeVar("S", bound=KernelSettings)

console = Console()
err_console = Console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    """Print ``message`` (and what to do) to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}")
    raise typer.Exit(code)


def fail_with(exc: ApiError, detail: str = "") -> NoReturn:
    """Fail with an `ApiError`'s English message (and hint)."""
    from apprun.kernel.i18n import translator

    hint = translator().gettext(exc.hint, "en", exc.params) if exc.hint else None
    fail(translator().gettext(exc.code, "en", exc.params) + detail, hint)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """The root command's context object: how a sub-command gets the settings and the module list.

    Both are loaded when asked for: the module list imports every module.
    """

    #: The composed settings, validated (the command fails with a clear message when they are wrong).
    load_settings: Callable[[], KernelSettings]
    #: The ordered module list (apprun/modules.py).
    load_modules: Callable[[], Sequence[type[Module]]]


def _context(ctx: typer.Context) -> CommandContext:
    found = ctx.find_object(CommandContext)
    if found is None:  # pragma: no cover - the apprun root command always sets it
        raise RuntimeError("no CommandContext: run the command through `apprun`")
    return found


def settings_of(ctx: typer.Context, cls: type[S]) -> S:
    """The settings, as the section ``cls`` (the command fails with a clear message when they are wrong)."""
    return section(_context(ctx).load_settings(), cls)


def modules_for(ctx: typer.Context, name: str) -> tuple[type[Module], ...]:
    """Module ``name`` and the modules it requires, in order: what a command of ``name`` builds."""
    return needed_for(_context(ctx).load_modules(), name)


def preflight(settings: KernelSettings, ctx: typer.Context, *, isolated: bool = False) -> None:
    """Wait for the database and migrate/check the schema once (before serving, or before a command's work).

    Every listed module's tables are migrated (``ctx`` gives the module list), not only the command's.
    ``isolated`` (``apprun serve``): in a forked child process, so that Alembic and SQLAlchemy, which
    the check imports, never load in the process the workers are forked from; what the child found
    is left in this process's environment for the workers (``kernel/db/revision.py``).
    """
    from apprun.kernel.modules import migration_locations
    from apprun.kernel.runtime import BootError
    from apprun.kernel.runtime import preflight as check

    migrations = migration_locations(_context(ctx).load_modules())
    try:
        if isolated:
            _in_child(lambda: asyncio.run(check(settings, migrations)), settings)
            return
        with err_console.status(f"waiting for {settings.database.describe()} …", spinner="dots"):
            asyncio.run(check(settings, migrations))
    except BootError as exc:
        fail(str(exc))


def _in_child(run: Callable[[], None], settings: KernelSettings) -> None:
    """``run()`` in a forked child; its `BootError` raised here, the schema state it found copied here.

    Anything else it raises is printed (its traceback) and ends the command, as it would in this process.
    """
    import multiprocessing
    import os
    import traceback

    from apprun.kernel.db.revision import ENV
    from apprun.kernel.runtime import BootError

    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)

    def child() -> None:
        try:
            run()
            sender.send(("ok", os.environ.get(ENV)))
        except BootError as exc:
            sender.send(("boot", str(exc)))
        except BaseException:  # noqa: BLE001 - reported by the parent
            sender.send(("error", traceback.format_exc()))

    # Forked before the spinner's thread starts.
    process = multiprocessing.get_context("fork").Process(target=child, name="apprun-preflight")
    process.start()
    sender.close()
    with err_console.status(f"waiting for {settings.database.describe()} …", spinner="dots"):
        try:
            outcome, value = receiver.recv()
        except EOFError:  # it died without a word (killed)
            process.join()
            outcome, value = "error", f"the preflight process exited with {process.exitcode} before answering\n"
        process.join()
    if outcome == "boot":
        raise BootError(value)
    if outcome == "error":
        err_console.print(value, markup=False, highlight=False, end="")
        raise typer.Exit(1)
    if value is not None:
        os.environ[ENV] = value
