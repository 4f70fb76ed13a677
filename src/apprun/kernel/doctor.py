"""`apprun doctor`: is every configured dependency reachable, and if not, what to do.

Each check speaks just enough of the dependency's protocol to know it is the
right thing answering: SQL for the database, Redis's ``PONG``. The kernel
checks its own dependencies (data dir, secret, database, Redis); each enabled
module adds the checks of the engines it is configured with (its
``doctor_checks``: the events module checks NATS's ``INFO`` greeting).
Dependencies that are not configured are not checked.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from apprun.kernel.config import KernelSettings
from apprun.kernel.db import create_database

__all__ = ["DoctorResult", "greeting", "run_checks"]


@dataclass(frozen=True, slots=True)
class DoctorResult:
    name: str
    ok: bool
    detail: str
    fix: str
    required: bool = True


async def _data_dir(settings: KernelSettings) -> DoctorResult:
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
        return DoctorResult("data dir", True, str(path), "")
    except OSError as exc:
        return DoctorResult("data dir", False, f"{path}: {exc.strerror}", "make APPRUN_DATA_DIR writable")


async def _database(settings: KernelSettings, migrations: Sequence[str]) -> DoctorResult:
    db = create_database(settings)
    name = f"database ({db.dialect})"
    try:
        await db.open()
        latency = await db.ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        cause = exc.__cause__ or exc
        fix = (
            "start PostgreSQL, or fix DATABASE_URL / DB_HOST / DB_PORT / DB_USER"
            if db.dialect == "postgres"
            else "make APPRUN_DATA_DIR writable"
        )
        return DoctorResult(name, False, f"{db.describe()}: {type(cause).__name__}: {cause}", fix)
    finally:
        await db.close()
    from apprun.kernel.db.migrate import migration_state  # Alembic: only for the check, not in serving workers

    try:
        state = await migration_state(settings.database, migrations)
    except Exception as exc:  # noqa: BLE001
        return DoctorResult(name, False, f"cannot read the schema revision: {exc}", "run `apprun migrate`")
    if not state.up_to_date:
        return DoctorResult(
            name,
            False,
            f"{db.describe()} answers, schema at {state.current_text}, needs {state.heads_text}",
            "run `apprun migrate`",
        )
    return DoctorResult(name, True, f"{db.describe()}, {latency * 1000:.1f} ms, schema up to date", "")


async def greeting(host: str, port: int, send: bytes | None, wait: float = 2.0) -> bytes:
    """The first line a TCP server answers (after ``send``, if given): enough to know what is listening."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    try:
        if send:
            writer.write(send)
            await writer.drain()
        return await asyncio.wait_for(reader.readline(), wait)
    finally:
        writer.close()


async def _redis(settings: KernelSettings) -> DoctorResult:
    host, port = settings.redis_host or "127.0.0.1", settings.redis_port
    try:
        line = await greeting(host, port, b"PING\r\n")
    except (OSError, TimeoutError) as exc:
        return DoctorResult("redis", False, f"{host}:{port}: {exc}", "start redis-server, or fix REDIS_HOST/REDIS_PORT")
    ok = line.startswith(b"+PONG")
    detail = f"{host}:{port}" if ok else f"{host}:{port} answered {line[:60]!r}"
    return DoctorResult("redis", ok, detail, "" if ok else "check Redis authentication and REDIS_HOST")


async def _secret(settings: KernelSettings) -> DoctorResult:
    if settings.jwt_secret is not None:
        return DoctorResult("JWT secret", True, "from JWT_SECRET", "")
    path = settings.data_dir / "jwt_secret"
    if path.exists() and (path.stat().st_mode & 0o077):
        return DoctorResult("JWT secret", False, f"{path} is readable by others", f"chmod 600 {path}")
    return DoctorResult("JWT secret", True, f"generated, kept in {path}", "", required=False)


async def run_checks(
    settings: KernelSettings,
    extra: Sequence[Callable[[], Awaitable[DoctorResult]]] = (),
    *,
    migrations: Sequence[str],
) -> list[DoctorResult]:
    """The kernel's checks that apply to this configuration, then ``extra`` (the modules'), run concurrently.

    ``migrations``: every listed module's migrations package, for the schema check.
    """
    checks: list[Awaitable[DoctorResult]] = [
        _data_dir(settings),
        _secret(settings),
        _database(settings, migrations),
    ]
    if settings.redis_host:
        checks.append(_redis(settings))
    checks.extend(check() for check in extra)
    return list(await asyncio.gather(*checks))
