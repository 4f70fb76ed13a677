"""CPU time per request in one process: apprun's ASGI app called directly, no server, no network.

The HTTP benchmarks (``make bench``) measure what a user gets, but on a
shared 2-core machine two runs of the same commit differ by 10 % and more.
This measures what one change does to the worker's own cost: the app is
built on SQLite in a temporary directory, seeded through its API, and one
workload is sent N times straight to the ASGI callable; the CPU time of the
process is divided by N. Compare two commits by running it alternately in a
worktree of each (``PYTHONPATH=<worktree>/src``), several times, and
comparing medians; ``--profile FILE`` writes a cProfile of the measured
requests (``python -m pstats FILE``).

    python -m benchmarks.cpu_per_request view 3000
    python -m benchmarks.cpu_per_request list_auth 3000 --postgres   # a throw-away database on 127.0.0.1:5432

``--target`` prices what apprun adds: ``ceiling`` sends the workload to the
HTTP benchmark's ceiling (``harness/ceiling_app.py``: the same SQL behind a
bare ASGI callable, on the same seeded database); ``kernel`` to the kernel's
middleware alone around a callable that answers a fixed body (request id,
context, locale, span check, metrics, the access-log line: what every request
costs whatever it does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from apprun.app import create_app, runtime_of
from apprun.modules import Settings
from benchmarks.harness.apprun_system import PRIVATE, PUBLIC
from benchmarks.harness.pocketbase import BODY, record

WORKLOADS = ("list_public", "list_auth", "view", "create")
TARGETS = ("apprun", "ceiling", "kernel")
_PASSWORD = "bench-password-1234"
#: Rows per collection: enough for a 20-row page, few enough to seed in a second.
_ROWS = 500


Message = MutableMapping[str, Any]
Asgi = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]


class _Lifespan:
    """The app's lifespan, driven by hand on this loop (the test clients run it on another)."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        started = await self.outbox.get()
        if started["type"] != "lifespan.startup.complete":
            reason = str(started.get("message", started)).strip().splitlines()[-2:]
            raise RuntimeError(f"the app did not start: {' '.join(reason)}")

    async def __aexit__(self, *_: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        if self.task is not None:
            await self.task


async def _call(c: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    reply = await c.request(method, path, **kw)
    if reply.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
    return reply.json() if reply.content else None


async def _seed(app: Any, c: httpx.AsyncClient) -> tuple[str, str, str]:
    """The HTTP benchmarks' two collections, `_ROWS` rows each; a user's token and tenant, and a row id."""
    admin = await _call(c, "POST", "/auth/register", json={"email": "admin@example.com", "password": _PASSWORD})
    async with runtime_of(app).db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET is_platform_admin = $1 WHERE id = $2", True, admin["user"]["id"])
    login = {"email": "admin@example.com", "password": _PASSWORD}
    bearer = {"Authorization": f"Bearer {(await _call(c, 'POST', '/auth/login', json=login))['access_token']}"}
    for definition in (PUBLIC, PRIVATE):  # the HTTP benchmarks' collections and rows
        await _call(c, "POST", "/api/v1/collections", json=definition, headers=bearer)
    rows = [record(i) for i in range(_ROWS)]
    await _call(c, "POST", "/data/bench_public", json=rows, headers={**bearer, "Prefer": "return=minimal"})
    await _call(c, "POST", "/auth/register", json={"email": "user@example.com", "password": _PASSWORD})
    login = {"email": "user@example.com", "password": _PASSWORD}
    user = await _call(c, "POST", "/auth/login", json=login)
    token = str(user["access_token"])
    await _call(c, "POST", "/data/bench_private", json=rows, headers={"Authorization": f"Bearer {token}"})
    first = await _call(c, "GET", "/data/bench_public?select=id&limit=1&order=id")
    return token, str(user["tenant_id"]), str(first[0]["id"])


def _requests(token: str, row_id: str) -> dict[str, tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]]:
    auth = (b"authorization", f"Bearer {token}".encode())
    body = json.dumps({"title": "New", "body": BODY, "views": 1, "published": True}).encode()
    return {
        "list_public": ("GET", "/data/bench_public", b"limit=20", [], b""),
        "list_auth": ("GET", "/data/bench_private", b"limit=20", [auth], b""),
        "view": ("GET", f"/data/bench_public/{row_id}", b"", [], b""),
        "create": (
            "POST",
            "/data/bench_private",
            b"",
            [auth, (b"content-type", b"application/json"), (b"prefer", b"return=representation"),
             (b"content-length", str(len(body)).encode())],
            body,
        ),
    }  # fmt: skip


#: The PostgreSQL server ``--postgres`` creates its throw-away database on (trust auth, as on these machines).
_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def _database(work: Path, postgres: bool) -> Any:
    """A SQLite file in ``work``, or a throw-away PostgreSQL database (dropped afterwards)."""
    if not postgres:
        yield f"sqlite:///{work / 'apprun.db'}"
        return
    import asyncpg

    name = f"apprun_cpu_{os.getpid()}"
    conn = await asyncpg.connect(_PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(_PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _ceiling(url: str, tenant: str, row_id: str) -> tuple[Asgi, dict[str, tuple[str, str]]]:
    """The ceiling's ASGI callable on apprun's seeded database, and its request line per workload."""
    import importlib

    postgres = url.startswith("postgres")
    os.environ["CEILING_DIALECT"] = "postgres" if postgres else "sqlite"
    os.environ["CEILING_TENANT"] = tenant
    if postgres:
        os.environ["CEILING_PG_DATABASE"] = url.rsplit("/", 1)[1]
    else:
        os.environ["CEILING_SQLITE"] = url.removeprefix("sqlite:///")
    ceiling = importlib.import_module("benchmarks.harness.ceiling_app")
    lines = {
        "list_public": ("GET", "/list_public"),
        "list_auth": ("GET", "/list_auth"),
        "view": ("GET", f"/view/{row_id}"),
        "create": ("POST", "/create"),
    }
    return ceiling.app, lines


def _fixed_body(body: bytes) -> Asgi:
    """A callable that answers ``body`` whatever the request, as a data route would send it."""

    async def app(_scope: MutableMapping[str, Any], _receive: Any, send: Callable[[Message], Awaitable[None]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


async def measure(
    workload: str, n: int, profile: Path | None, *, postgres: bool = False, target: str = "apprun"
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="apprun-cpu-"))
    async with _database(work, postgres) as url:
        return await _measure(workload, n, profile, work, url, target=target)


async def _measure(workload: str, n: int, profile: Path | None, work: Path, url: str, *, target: str) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        apprun_env="prod",
        apprun_data_dir=work,
        jwt_secret="x" * 64,
        database_url=url,
        mail_backend="none",
        auth_rate_limit_ip="100000000/60",
        apprun_auto_migrate=True,
    )
    # The access log is part of the cost; its lines go nowhere.
    app = create_app(settings)
    async with _Lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            token, tenant, row_id = await _seed(app, c)
        method, path, query, headers, payload = _requests(token, row_id)[workload]
        served: Asgi = app
        if target == "ceiling":
            served, lines = _ceiling(url, tenant, row_id)
            method, path = lines[workload]
            query, headers = b"", [h for h in headers if h[0] != b"authorization"]
        elif target == "kernel":
            from apprun.kernel.middleware import KernelMiddleware

            served = KernelMiddleware(_fixed_body(b'{"id":"x"}'), runtime_of(app))  # type: ignore[arg-type]
        statuses: list[int] = []

        async def one() -> None:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
                "headers": [(b"host", b"127.0.0.1"), (b"accept", b"*/*"), *headers],
                "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8080), "state": {},
            }  # fmt: skip
            sent = False

            async def receive() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": payload, "more_body": False}
                await asyncio.Event().wait()  # the client never disconnects
                raise AssertionError("unreachable")

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await served(scope, receive, send)

        for _ in range(200):  # warm-up: caches, plans, the first connections
            await one()
        profiler = cProfile.Profile() if profile else None
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for _ in range(n):
            await one()
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler and profile:
            profiler.dump_stats(profile)
        failed = [s for s in statuses if s >= 300]
        if failed:
            raise RuntimeError(f"{len(failed)} of {n} requests failed (status {failed[0]})")
    return {
        "workload": workload,
        "target": target,
        "database": url.split(":", 1)[0],
        "requests": n,
        "us_cpu": round(cpu / n * 1e6, 1),
        "us_wall": round(wall / n * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured requests here")
    parser.add_argument("--postgres", action="store_true", help="on a throw-away database on 127.0.0.1:5432")
    parser.add_argument("--target", choices=TARGETS, default="apprun", help="what serves the requests (see above)")
    args = parser.parse_args(argv)
    for name in list(os.environ):
        if name.startswith(("APPRUN_", "DB_", "DATABASE_", "HTTP_", "AUTH_", "PUBSUB_")):
            del os.environ[name]
    # Log lines (the access log included) are written, as in production, but not kept.
    with contextlib.redirect_stdout(io.StringIO()) as sink:
        result = asyncio.run(measure(args.workload, args.n, args.profile, postgres=args.postgres, target=args.target))
    del sink
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
