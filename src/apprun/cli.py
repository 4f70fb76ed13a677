"""The ``apprun`` command.

``serve`` runs the service under granian, ``migrate`` brings the schema to
the version this build needs, ``config show`` prints the effective
configuration by section with secrets masked, ``doctor`` checks each
configured dependency, ``version`` prints the version. Each enabled module
adds its own command groups (``admin``, ``collections`` …: its `Module.cli`).

Heavy modules are imported inside the commands, and the modules' groups are
loaded only when one is asked for (or for ``--help``): ``serve`` must set up
the metrics directory before anything imports prometheus_client, and every
module does.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from apprun import __version__
from apprun.kernel.commands import CommandContext, console, err_console, fail, preflight
from apprun.kernel.config import ConfigError, KernelSettings, load, masked_sections

if TYPE_CHECKING:
    from apprun.kernel.module import Module
    from apprun.modules import Settings

__all__ = ["app", "main"]


class _WithModuleCommands(TyperGroup):
    """apprun's own commands, then the enabled modules' groups, loaded on demand."""

    # Any: typer vendors click and names its Context and Command types only in a private module.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *_module_groups()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return super().get_command(ctx, cmd_name) or _module_groups().get(cmd_name)


@functools.cache
def _module_groups() -> dict[str, TyperGroup]:
    """The command groups of the modules ``APPRUN_MODULES`` enables (of all, if the settings are unusable:
    the command itself then says what is wrong with them)."""
    from apprun.kernel.modules import enabled_modules
    from apprun.modules import MODULES, load_settings

    try:
        modules = enabled_modules(MODULES, load_settings())
    except ConfigError:
        modules = MODULES
    groups: dict[str, TyperGroup] = {}
    for module in modules:
        for name, typer_app in module.cli().items():
            group = typer.main.get_group(typer_app)
            group.name = name
            groups[name] = group
    return groups


app = typer.Typer(
    name="apprun",
    help="apprun: a self-hostable Backend-as-a-Service.",
    cls=_WithModuleCommands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def _root(ctx: typer.Context) -> None:
    # How the modules' commands get the settings (kernel/commands.py).
    ctx.obj = CommandContext(load_settings=_settings, load_modules=_modules)


def _modules() -> tuple[type[Module], ...]:
    from apprun.modules import MODULES

    return MODULES


def _settings(**overrides: Any) -> Settings:
    """Every section, validated, with the module selection checked (imports the modules)."""
    from apprun.kernel.modules import enabled_modules
    from apprun.modules import MODULES, load_settings

    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        enabled_modules(MODULES, settings)
    except ConfigError as exc:
        fail(str(exc), "settings come from environment variables or ./.env; see docs/configuration.md")
    return settings


def _kernel_settings() -> KernelSettings:
    """The kernel's settings only: read without importing any module."""
    try:
        return load(KernelSettings)
    except ConfigError as exc:
        fail(str(exc), "settings come from environment variables or ./.env; see docs/configuration.md")


@app.command()
def version() -> None:
    """Print apprun's version."""
    console.print(f"apprun {__version__}")


@app.command()
def serve(
    ctx: typer.Context,
    *,
    host: Annotated[str | None, typer.Option(help="address to bind (default: HTTP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default: HTTP_PORT)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes, 0 = one per core (default: HTTP_WORKERS)")
    ] = None,
    reload: Annotated[bool, typer.Option(help="restart on code changes (dev only)")] = False,
    app_target: Annotated[str, typer.Option("--app", hidden=True, help="ASGI factory to serve")] = "apprun.app:asgi",
) -> None:
    """Run apprun under granian."""
    # Workers read their settings from the environment: carry CLI overrides there.
    for name, value in (("HTTP_HOST", host), ("HTTP_PORT", port), ("HTTP_WORKERS", workers)):
        if value is not None:
            os.environ[name] = str(value)
    kernel = _kernel_settings()
    if reload and not kernel.is_dev:
        fail("--reload is for development", "unset APPRUN_ENV=prod or drop --reload")
    n_workers = 1 if reload else kernel.workers
    metrics_dir = kernel.data_dir / "run" / f"metrics-{os.getpid()}"
    if n_workers > 1 and kernel.metrics_enabled:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Every section, validated: imports the modules, and with them prometheus_client, which
    # reads PROMETHEUS_MULTIPROC_DIR once, when it is first imported.
    settings = _settings()

    from granian import Granian
    from granian.constants import Interfaces

    from apprun.kernel.logging import configure_logging, logging_dict_config

    configure_logging(settings.log_level, settings.log_format)
    preflight(settings, ctx, isolated=True)
    # The banner goes to stderr: stdout carries only JSON log lines.
    err_console.print(
        f"[bold]apprun {__version__}[/] on http://{settings.http_host}:{settings.http_port} "
        f"({settings.apprun_env}, {n_workers} worker{'s' if n_workers > 1 else ''}, "
        f"{settings.database.describe()})",
        highlight=False,
    )
    if n_workers > 1 and not reload:
        # granian forks its workers from this process: with the application's
        # modules imported here first, the workers share those pages instead
        # of each importing (and holding) its own copy.
        importlib.import_module(app_target.partition(":")[0])
        gc.freeze()  # and the collector leaves those objects (and their pages) alone
    server = Granian(
        app_target,
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.http_host,
        port=settings.http_port,
        workers=n_workers,
        log_dictconfig=logging_dict_config(settings.log_level, settings.log_format),
        log_access=False,
        workers_kill_timeout=settings.http_graceful_timeout,
        reload=reload,
        reload_paths=[Path(__file__).parent] if reload else None,
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _migrations() -> tuple[str, ...]:
    """Every listed module's migrations package, enabled or not (a module switched on later finds its tables)."""
    from apprun.kernel.modules import migration_locations

    return migration_locations(_modules())


def _run_migrations(settings: KernelSettings) -> None:
    from apprun.kernel.db.migrate import upgrade

    db = settings.database
    try:
        with console.status(f"migrating {db.describe()} …", spinner="dots"):
            state = asyncio.run(upgrade(db, _migrations()))
    except Exception as exc:  # noqa: BLE001 - turned into a message that says what to do
        fail(
            f"migration of {db.describe()} failed: {type(exc).__name__}: {exc}",
            "check that the database is running and reachable (`apprun doctor`)",
        )
    console.print(f"[green]schema at revision {state.current_text}[/] ({db.describe()})")


@app.command()
def migrate(
    status: Annotated[bool, typer.Option("--status", help="only show the current and needed revisions")] = False,
) -> None:
    """Bring the database schema to the revision this apprun needs."""
    settings = _settings()
    if status:
        from apprun.kernel.db.migrate import migration_state

        try:
            state = asyncio.run(migration_state(settings.database, _migrations()))
        except Exception as exc:  # noqa: BLE001
            fail(f"cannot read the schema revision: {type(exc).__name__}: {exc}", "run `apprun doctor`")
        if state.up_to_date:
            console.print(f"[green]up to date[/]: {state.current_text}")
            return
        console.print(f"current {state.current_text}, needed {state.heads_text}: [yellow]needs `apprun migrate`[/]")
        raise typer.Exit(1)
    _run_migrations(settings)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (one flat object) instead of tables")] = False,
) -> None:
    """Print the effective configuration by section (the kernel's, then each module's), secrets masked."""
    from apprun.modules import sections

    groups = masked_sections(_settings(), sections())
    if as_json:
        console.print_json(json.dumps({key: value for group in groups.values() for key, value in group.items()}))
        return
    for section_name, values in groups.items():
        if not values:
            continue
        table = Table(title=f"apprun configuration: {section_name}", show_lines=False, title_justify="left")
        table.add_column("setting", style="bold")
        table.add_column("value")
        for key, value in values.items():
            table.add_row(key, value)
        console.print(table)


@app.command()
def doctor() -> None:
    """Check every configured dependency and say what to do about each one that is down."""
    from apprun.kernel.doctor import run_checks
    from apprun.kernel.modules import enabled_modules
    from apprun.modules import MODULES

    settings = _settings()
    checks = [check for module in enabled_modules(MODULES, settings) for check in module.doctor_checks(settings)]
    with console.status("checking dependencies …", spinner="dots"):
        results = asyncio.run(run_checks(settings, checks, migrations=_migrations()))
    table = Table(title="apprun doctor")
    table.add_column("dependency", style="bold")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("what to do")
    failed = False
    for r in results:
        status = "[green]UP[/]" if r.ok else ("[red]DOWN[/]" if r.required else "[yellow]DOWN[/]")
        failed |= not r.ok and r.required
        table.add_row(r.name, status, r.detail, "" if r.ok else r.fix)
    console.print(table)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``apprun`` script."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
