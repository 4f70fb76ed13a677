"""The runtime: the resources one apprun worker holds, opened and closed in order.

`Runtime.start` runs in the ASGI lifespan startup of each worker: tracing,
the database pool (waiting up to ``DB_BOOT_WAIT`` seconds for the database),
schema migrations (dev mode, or ``APPRUN_AUTO_MIGRATE=true``), the health
checks and the metrics sampler. `Runtime.stop` runs at shutdown — after the
server has finished the requests in flight — and closes them in reverse.
Modules add their own resources with `on_start`/`on_stop` hooks (the
assembly in kernel/modules.py registers every module's start and stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from apprun.kernel import tracing
from apprun.kernel.config import KernelSettings
from apprun.kernel.db import Database, create_database, revision
from apprun.kernel.errors import ApiError
from apprun.kernel.health import HealthRegistry
from apprun.kernel.i18n import Translator, translator
from apprun.kernel.logging import get_logger
from apprun.kernel.metrics import Metrics

__all__ = [
    "STOP_TIMEOUT",
    "BootError",
    "Hook",
    "Runtime",
    "migrate_or_check",
    "preflight",
    "stop_step",
    "wait_for_database",
]

_log = get_logger("apprun.runtime")

#: Seconds one module may take to stop before apprun stops the others without it.
STOP_TIMEOUT = 15.0


async def stop_step(step: Awaitable[object], name: str, limit_s: float | None = None) -> None:
    """Await one step of stopping for at most ``limit_s`` (`STOP_TIMEOUT`) seconds; log, never raise.

    A module that fails, or hangs (even ignoring cancellation), must not keep
    the others open: the step is left behind, and what every pending task was
    doing is logged so the hang can be found.
    """
    task = asyncio.ensure_future(step)
    limit = STOP_TIMEOUT if limit_s is None else limit_s
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()
        stacks = {}
        for pending in asyncio.all_tasks():
            if pending is not asyncio.current_task():
                out = io.StringIO()
                pending.print_stack(limit=12, file=out)
                stacks[pending.get_name()] = out.getvalue()
        _log.error("stop_step_timeout", step=name, seconds=limit, tasks=stacks)
        return
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _log.error("stop_step_failed", step=name, exc_info=exc)


Hook = Callable[["Runtime"], Awaitable[None]]


class BootError(Exception):
    """apprun cannot start; the message says what to do."""


async def wait_for_database(db: Database, boot_wait: float) -> None:
    """Ping until the database answers, for at most ``boot_wait`` seconds."""
    deadline = time.monotonic() + boot_wait
    while True:
        try:
            await db.ping()
            return
        except ApiError as exc:
            if time.monotonic() >= deadline:
                cause = exc.__cause__ or exc
                raise BootError(
                    f"cannot reach the database ({db.describe()}): {type(cause).__name__}: {cause}. "
                    "Start it, or point DATABASE_URL / DB_HOST / DB_PORT at a running one "
                    "(`apprun doctor` checks every dependency)."
                ) from exc
            _log.warning("database_not_ready", database=db.describe(), code=exc.code)
            await asyncio.sleep(0.5)


async def migrate_or_check(
    settings: KernelSettings, migrations: Sequence[str], db: Database | None = None
) -> revision.MigrationState:
    """Migrate (dev, or APPRUN_AUTO_MIGRATE) or refuse a schema that is not at heads; the schema's state.

    ``migrations``: the modules' migrations packages (``kernel.modules.migration_locations``).
    With ``db``, a schema that ``apprun serve`` found at heads before starting
    this worker, and that is still there, is known with one plain query
    (`revision.known_state`); otherwise, and always without ``db``, Alembic
    reads the revisions (imported here, not at start: serving does not need it).
    """
    if db is not None:
        known = await revision.known_state(db, migrations)
        if known is not None:
            if settings.auto_migrate:
                _log.info("schema_ready", revision=known.current_text)
            return known
    from apprun.kernel.db.migrate import migration_state, upgrade

    config = settings.database
    if settings.auto_migrate:
        state = await upgrade(config, migrations)
        _log.info("schema_ready", revision=state.current_text)
        return state
    state = await migration_state(config, migrations)
    if not state.up_to_date:
        raise BootError(
            f"the database schema is at revision {state.current_text} but this apprun needs "
            f"{state.heads_text}: run `apprun migrate` (or set APPRUN_AUTO_MIGRATE=true)"
        )
    return state


async def preflight(settings: KernelSettings, migrations: Sequence[str]) -> None:
    """What every worker checks at start, done once before they start, so a
    broken setup fails with one clear message instead of one per worker.

    The schema found at heads is remembered for the workers (`revision.remember`):
    they then check it with a plain query instead of Alembic.
    """
    db = create_database(settings)
    try:
        await db.open()
        await wait_for_database(db, settings.db_boot_wait)
        await migrate_or_check(settings, migrations)
        from apprun.kernel.db.migrate import state_of

        # The state of exactly the rows remembered (another instance may have migrated meanwhile).
        stored = await revision.stored_revisions(db)
        revision.remember(stored, state_of(stored, migrations), migrations)
    finally:
        await db.close()


@dataclass(eq=False)
class Runtime:
    """Settings plus the live resources built from them."""

    #: The composed settings (every enabled module's section); modules read theirs with `section`.
    settings: KernelSettings
    #: Every listed module's migrations package (`assemble` sets them); the kernel's branch is always migrated.
    migrations: tuple[str, ...] = ()
    translator: Translator = field(default_factory=translator)
    metrics: Metrics = field(default_factory=Metrics)
    health: HealthRegistry = field(default_factory=HealthRegistry)
    db: Database = field(init=False)
    _start_hooks: list[Hook] = field(default_factory=list)
    _stop_hooks: list[Hook] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False

    def __post_init__(self) -> None:
        self.db = create_database(self.settings)

    def on_start(self, hook: Hook) -> None:
        """Run ``hook`` after the kernel's resources are up (in registration order)."""
        self._start_hooks.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run ``hook`` at shutdown, before the kernel's resources close (reverse order)."""
        self._stop_hooks.append(hook)

    async def start(self) -> None:
        s = self.settings
        tracing.setup_tracing(s)
        # The signing secret exists before anything needs it (generated once in dev).
        s.jwt_secret_value()
        await self.db.open()
        await self._wait_for_database()
        await self._migrate()
        await self._record_installation()
        self.health.register("database", self._check_database, required=True)
        self.metrics.watch_pool(self.db.pool_stats)
        self._tasks.append(asyncio.create_task(self._sample_metrics(), name="apprun-metrics-sampler"))
        for hook in self._start_hooks:
            await hook(self)
        self.started = True
        _log.info(
            "apprun_started",
            env=s.apprun_env,
            database=self.db.describe(),
            tracing=tracing.enabled(),
        )

    async def stop(self) -> None:
        for hook in reversed(self._stop_hooks):
            await stop_step(hook(self), getattr(hook, "__qualname__", repr(hook)))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await stop_step(task, task.get_name())
        self._tasks.clear()
        await self.db.close()
        self.metrics.close()
        tracing.shutdown_tracing()
        self.started = False
        _log.info("apprun_stopped")

    async def _wait_for_database(self) -> None:
        await wait_for_database(self.db, self.settings.db_boot_wait)

    async def _migrate(self) -> None:
        await migrate_or_check(self.settings, self.migrations, self.db)

    async def _record_installation(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        sql = "INSERT INTO apprun_meta (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING"
        async with self.db.transaction() as conn:
            await conn.execute(sql, "installed_at", now.isoformat(), now)
            await conn.execute(sql, "instance_id", uuid.uuid4().hex, now)

    async def _check_database(self) -> str:
        latency = await self.db.ping()
        return f"{self.db.dialect} answered in {latency * 1000:.1f} ms"

    async def _sample_metrics(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.metrics.sample()
            await asyncio.sleep(5)
