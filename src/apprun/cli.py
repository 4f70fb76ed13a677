"""The ``apprun`` command.

``serve`` runs the service under granian, ``migrate`` brings the schema to
the version this build needs, ``config show`` prints the effective
configuration with secrets masked, ``doctor`` checks each configured
dependency, ``version`` prints the version. Heavy modules are imported inside
the commands: ``serve`` must set up the metrics directory before anything
imports prometheus_client.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from apprun import __version__
from apprun.kernel.config import ConfigError, Settings, load_settings, masked_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="apprun",
    help="apprun: a self-hostable Backend-as-a-Service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
admin_app = typer.Typer(help="Platform administration.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
collections_app = typer.Typer(help="Define the data API's collections.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}")
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        _fail(str(exc), "settings come from environment variables or ./.env; see docs/configuration.md")


@app.command()
def version() -> None:
    """Print apprun's version."""
    console.print(f"apprun {__version__}")


@app.command()
def serve(
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
    settings = _settings()
    if reload and not settings.is_dev:
        _fail("--reload is for development", "unset APPRUN_ENV=prod or drop --reload")
    n_workers = 1 if reload else settings.workers
    metrics_dir = settings.data_dir / "run" / f"metrics-{os.getpid()}"
    if n_workers > 1 and settings.metrics_enabled:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from granian import Granian
    from granian.constants import Interfaces

    from apprun.kernel.logging import configure_logging, logging_dict_config

    configure_logging(settings.log_level, settings.log_format)
    _preflight(settings)
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


def _preflight(settings: Settings) -> None:
    """Wait for the database and migrate/check the schema once, before the workers start."""
    from apprun.kernel.runtime import BootError, preflight

    try:
        with err_console.status(f"waiting for {settings.database.describe()} …", spinner="dots"):
            asyncio.run(preflight(settings))
    except BootError as exc:
        _fail(str(exc))


def _run_migrations(settings: Settings) -> None:
    from apprun.kernel.db.migrate import upgrade

    db = settings.database
    try:
        with console.status(f"migrating {db.describe()} …", spinner="dots"):
            state = asyncio.run(upgrade(db))
    except Exception as exc:  # noqa: BLE001 - turned into a message that says what to do
        _fail(
            f"migration of {db.describe()} failed: {type(exc).__name__}: {exc}",
            "check that the database is running and reachable (`apprun doctor`)",
        )
    console.print(f"[green]schema at revision {state.current}[/] ({db.describe()})")


@app.command()
def migrate(
    status: Annotated[bool, typer.Option("--status", help="only show the current and needed revisions")] = False,
) -> None:
    """Bring the database schema to the revision this apprun needs."""
    settings = _settings()
    if status:
        from apprun.kernel.db.migrate import migration_state

        try:
            state = asyncio.run(migration_state(settings.database))
        except Exception as exc:  # noqa: BLE001
            _fail(f"cannot read the schema revision: {type(exc).__name__}: {exc}", "run `apprun doctor`")
        mark = "[green]up to date[/]" if state.up_to_date else "[yellow]needs `apprun migrate`[/]"
        console.print(f"current {state.current or '(empty)'}, needed {state.head}: {mark}")
        if not state.up_to_date:
            raise typer.Exit(1)
        return
    _run_migrations(settings)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    values = masked_settings(_settings())
    if as_json:
        console.print_json(json.dumps(values))
        return
    table = Table(title="apprun configuration", show_lines=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(key, value)
    console.print(table)


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Argument(help="the admin's email address")],
    password: Annotated[
        str | None, typer.Option(help="the password (else APPRUN_ADMIN_PASSWORD, else a prompt)")
    ] = None,
) -> None:
    """Create a platform admin (or make an existing user one). There is no default password."""
    settings = _settings()
    secret = password or os.environ.get("APPRUN_ADMIN_PASSWORD")
    if not secret:
        if not sys.stdin.isatty():
            _fail("no password given", "pass --password, set APPRUN_ADMIN_PASSWORD, or run in a terminal to be asked")
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    _preflight(settings)
    from apprun.auth.module import create_platform_admin
    from apprun.kernel.errors import ApiError

    try:
        user_id, created = asyncio.run(create_platform_admin(settings, email, secret))
    except ApiError as exc:
        from apprun.kernel.i18n import translator

        detail = f" ({exc.details})" if exc.details else ""
        _fail(translator().gettext(exc.code, "en", exc.params) + detail)
    verb = "created" if created else "promoted to platform admin"
    console.print(f"[green]{email} {verb}[/] (user id {user_id})")


@collections_app.command("apply")
def collections_apply(
    file: Annotated[Path, typer.Argument(help="a YAML or JSON file: one definition, a list, or {collections: [...]}")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the steps and the SQL; change nothing")] = False,
    allow_destructive: Annotated[
        bool, typer.Option("--allow-destructive", help="allow steps that delete data (dropping a field)")
    ] = False,
) -> None:
    """Create or change collections to match a file (idempotent: applying it twice changes nothing)."""
    if not file.is_file():
        _fail(f"{file} does not exist", "give the path of a YAML file with collection definitions")
    settings = _settings()
    _preflight(settings)
    from apprun.data.catalog import ApplyResult
    from apprun.data.model import CollectionDef
    from apprun.data.schema_file import apply_file
    from apprun.kernel.errors import ApiError
    from apprun.kernel.i18n import translator

    def report(collection: CollectionDef, result: ApplyResult) -> None:
        label = {"create": "created", "alter": "changed", "unchanged": "unchanged", "drop": "dropped"}
        if dry_run:
            console.print(f"[bold]{collection.name}[/]: would {result.operation}")
            for step in result.changes:
                console.print(f"  - {step['step']}{' [red](destructive)[/]' if step['destructive'] else ''}")
            if result.sql:
                typer.echo(result.sql)
            return
        version = f" (version {result.version})" if result.version else ""
        console.print(f"[green]{collection.name}[/]: {label.get(result.operation, result.operation)}{version}")
        for step in result.changes:
            console.print(f"  - {step['step']}")

    try:
        with console.status(f"applying {file} …", spinner="dots"):
            asyncio.run(
                apply_file(settings, file, dry_run=dry_run, allow_destructive=allow_destructive, progress=report)
            )
    except ApiError as exc:
        detail = f"\n{json.dumps(exc.details, indent=2, ensure_ascii=False)}" if exc.details else ""
        hint = translator().gettext(exc.hint, "en", exc.params) if exc.hint else None
        _fail(translator().gettext(exc.code, "en", exc.params) + detail, hint)


@app.command()
def doctor() -> None:
    """Check every configured dependency and say what to do about each one that is down."""
    from apprun.kernel.doctor import run_checks

    settings = _settings()
    with console.status("checking dependencies …", spinner="dots"):
        results = asyncio.run(run_checks(settings))
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
