"""`apprun doctor`: is every configured dependency reachable, and if not, what to do.

Each check speaks just enough of the dependency's protocol to know it is the
right thing answering: SQL for the database, NATS's ``INFO`` greeting, Redis's
``PONG``, an HTTP reply from S3, a TCP handshake with Temporal's gRPC port.
Dependencies that are not configured are not checked.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from apprun.kernel.config import Settings
from apprun.kernel.db import create_database
from apprun.kernel.db.migrate import migration_state

__all__ = ["DoctorResult", "run_checks"]


@dataclass(frozen=True, slots=True)
class DoctorResult:
    name: str
    ok: bool
    detail: str
    fix: str
    required: bool = True


async def _data_dir(settings: Settings) -> DoctorResult:
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
        return DoctorResult("data dir", True, str(path), "")
    except OSError as exc:
        return DoctorResult("data dir", False, f"{path}: {exc.strerror}", "make APPRUN_DATA_DIR writable")


async def _database(settings: Settings) -> DoctorResult:
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
    try:
        state = await migration_state(settings.database)
    except Exception as exc:  # noqa: BLE001
        return DoctorResult(name, False, f"cannot read the schema revision: {exc}", "run `apprun migrate`")
    if not state.up_to_date:
        return DoctorResult(
            name,
            False,
            f"{db.describe()} answers, schema at {state.current or '(empty)'}, needs {state.head}",
            "run `apprun migrate`",
        )
    return DoctorResult(name, True, f"{db.describe()}, {latency * 1000:.1f} ms, schema {state.current}", "")


async def _greeting(host: str, port: int, send: bytes | None, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    try:
        if send:
            writer.write(send)
            await writer.drain()
        return await asyncio.wait_for(reader.readline(), wait)
    finally:
        writer.close()


async def _nats(settings: Settings) -> DoctorResult:
    url = settings.pubsub_nats_url.split(",")[0]
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        line = await _greeting(host, port, None)
    except (OSError, TimeoutError) as exc:
        return DoctorResult(
            "bus (NATS)", False, f"{host}:{port}: {exc}", "start nats-server -js, or fix PUBSUB_NATS_URL"
        )
    if not line.startswith(b"INFO "):
        return DoctorResult("bus (NATS)", False, f"{host}:{port} is not a NATS server", "fix PUBSUB_NATS_URL")
    return DoctorResult("bus (NATS)", True, f"{host}:{port}", "")


async def _redis(settings: Settings) -> DoctorResult:
    host, port = settings.redis_host or "127.0.0.1", settings.redis_port
    try:
        line = await _greeting(host, port, b"PING\r\n")
    except (OSError, TimeoutError) as exc:
        return DoctorResult("redis", False, f"{host}:{port}: {exc}", "start redis-server, or fix REDIS_HOST/REDIS_PORT")
    ok = line.startswith(b"+PONG")
    detail = f"{host}:{port}" if ok else f"{host}:{port} answered {line[:60]!r}"
    return DoctorResult("redis", ok, detail, "" if ok else "check Redis authentication and REDIS_HOST")


async def _temporal(settings: Settings) -> DoctorResult:
    target = settings.temporal_host or ""
    host, _, port_s = target.rpartition(":")
    try:
        port = int(port_s)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", port), 2.0)
        writer.close()
    except (OSError, TimeoutError, ValueError) as exc:
        return DoctorResult("temporal", False, f"{target}: {exc}", "start Temporal, or fix TEMPORAL_HOST (host:port)")
    return DoctorResult("temporal", True, f"{target} accepts connections", "")


async def _s3(settings: Settings) -> DoctorResult:
    endpoint = settings.s3_endpoint or ""
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            reply = await client.get(endpoint)
    except (httpx.HTTPError, ValueError) as exc:
        return DoctorResult("storage (S3)", False, f"{endpoint}: {exc}", "start the S3 store, or fix S3_ENDPOINT")
    return DoctorResult("storage (S3)", True, f"{endpoint} answers HTTP {reply.status_code}", "")


async def _secret(settings: Settings) -> DoctorResult:
    if settings.jwt_secret is not None:
        return DoctorResult("JWT secret", True, "from JWT_SECRET", "")
    path = settings.data_dir / "jwt_secret"
    if path.exists() and (path.stat().st_mode & 0o077):
        return DoctorResult("JWT secret", False, f"{path} is readable by others", f"chmod 600 {path}")
    return DoctorResult("JWT secret", True, f"generated, kept in {path}", "", required=False)


async def run_checks(settings: Settings) -> list[DoctorResult]:
    """Every check that applies to this configuration, run concurrently."""
    checks = [_data_dir(settings), _secret(settings), _database(settings)]
    if settings.pubsub_backend == "nats":
        checks.append(_nats(settings))
    if settings.redis_host:
        checks.append(_redis(settings))
    if settings.temporal_host:
        checks.append(_temporal(settings))
    if settings.storage_backend == "s3":
        checks.append(_s3(settings))
    return list(await asyncio.gather(*checks))
