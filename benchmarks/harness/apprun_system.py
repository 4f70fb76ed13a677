"""apprun as a system under test: ``apprun serve`` under granian, on SQLite or PostgreSQL.

The harness runs the real command a user runs, in production mode, with its
events relayed to a NATS server the harness started. Seeding goes through
the public API (collections API, bulk POST), so what is measured is what a
user would deploy. Settings changed from the defaults, and why:

- ``AUTH_RATE_LIMIT_IP`` is raised: the login workload sends thousands of
  logins a second from one address, which the default limit (60/min) refuses.
  So are the per-account sign-in counts (``AUTH_RATE_LIMIT_ACCOUNT`` and
  ``AUTH_RATE_LIMIT_ACCOUNT_GLOBAL``): 64 connections sign one account in at
  once. The counters are still written (to the database, the default store
  without Redis), so a login's measured cost includes them.
- ``DATA_MAX_PAGE_SIZE`` stays at its default; the workloads ask for 20 rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks.harness.common import EngineError, Request, System, stop_group, wait_http
from benchmarks.harness.pocketbase import BODY, record

__all__ = ["ARGON2_NOTE", "Apprun"]

EMAIL = "bench@example.com"
PASSWORD = "bench-password-1234"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1234"
OTHER_EMAIL = "other@example.com"
#: apprun's password hash at its defaults (the OWASP minimum for argon2id).
ARGON2_NOTE = "argon2id, m=19 MiB, t=2, p=1 (OWASP's recommended minimum)"

_FIELDS = [
    {"name": "title", "type": "text"},
    {"name": "body", "type": "text"},
    {"name": "views", "type": "integer"},
    {"name": "published", "type": "boolean"},
]
PUBLIC = {
    "name": "bench_public",
    "scope": "global",
    "fields": _FIELDS,
    "rules": {"list": "public", "view": "public", "create": "nobody", "update": "nobody", "delete": "nobody"},
}
PRIVATE = {
    "name": "bench_private",
    "scope": "tenant",
    "fields": _FIELDS,
    "rules": {"list": "rbac", "view": "rbac", "create": "rbac", "update": "rbac", "delete": "rbac"},
}


class Apprun(System):
    """``apprun serve`` with ``workers`` granian workers on ``dialect`` ("sqlite" or "postgres")."""

    def __init__(self, workdir: Path, dialect: str, workers: int, nats_url: str) -> None:
        super().__init__(workdir)
        self.dialect = dialect
        self.workers = workers
        self.nats_url = nats_url
        self.name = f"apprun_{dialect}"
        self.db_name = f"apprun_bench_{os.getpid()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.tenant_id = ""
        self.view_ids: list[str] = []
        self._env = self._environment()
        self.workers = self._workers(workers)

    # --- process ------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "HTTP_", "APPRUN_"))}
        env.update(
            APPRUN_ENV="prod",
            APPRUN_DATA_DIR=str(self.workdir / "data"),
            APPRUN_AUTO_MIGRATE="true",
            JWT_SECRET=secrets.token_urlsafe(48),
            MAIL_BACKEND="none",
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(self.port),
            HTTP_WORKERS=str(self.workers),
            PUBSUB_BACKEND="nats",
            PUBSUB_NATS_URL=self.nats_url,
            AUTH_RATE_LIMIT_IP="100000000/60",
            AUTH_RATE_LIMIT_ACCOUNT="100000000/60",
            AUTH_RATE_LIMIT_ACCOUNT_GLOBAL="100000000/60",
            DB_DIALECT=self.dialect,
        )
        if self.dialect == "postgres":
            env.update(DB_HOST="127.0.0.1", DB_PORT="5432", DB_USER="postgres", DB_NAME=self.db_name)
        return env

    def _apprun(self, *args: str) -> None:
        binary = str(Path(sys.executable).parent / "apprun")
        done = subprocess.run([binary, *args], env=self._env, capture_output=True, check=False)
        if done.returncode != 0:
            raise EngineError(f"apprun {' '.join(args)} failed:\n{done.stdout.decode()}\n{done.stderr.decode()}")

    async def _database(self, create: bool) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            if create:
                await conn.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            await conn.close()

    def start(self) -> None:
        if self.dialect == "postgres":
            asyncio.run(self._database(create=True))
        self._apprun("migrate")
        self._apprun("admin", "create", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        self._serve()

    def _serve(self) -> None:
        binary = str(Path(sys.executable).parent / "apprun")
        log = open(self.workdir / "apprun.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [binary, "serve"], env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_http(f"{self.base_url}/.well-known/alive", timeout=60)
            if self.proc.poll() is not None:  # something else answered on the port
                raise EngineError(f"apprun serve exited with {self.proc.returncode}: {self._log_tail()}")
        except EngineError:
            self.stop()
            raise

    def _log_tail(self) -> str:
        try:
            return "\n".join((self.workdir / "apprun.log").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def restart(self, workers: int) -> None:
        """Serve the same data with another number of workers."""
        self.stop_process()
        self.workers = self._workers(workers)
        self._serve()

    def _workers(self, workers: int) -> int:
        self._env["HTTP_WORKERS"] = str(workers)
        db = "SQLite" if self.dialect == "sqlite" else "PostgreSQL"
        self.label = f"apprun ({db}, {workers} worker{'s' if workers > 1 else ''})"
        return workers

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def stop_process(self) -> None:
        """Stop ``apprun serve`` and its workers (see `stop_group`); the data stays."""
        if self.proc is not None:
            stop_group(self.proc, grace=30)
            self.proc = None

    def stop(self) -> None:
        """Stop the process and drop the PostgreSQL database."""
        self.stop_process()
        if self.dialect == "postgres":
            asyncio.run(self._database(create=False))

    # --- data -----------------------------------------------------------

    def _call(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> Any:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        reply = client.request(method, path, headers=headers, **kw)
        if reply.status_code >= 300:
            raise EngineError(f"apprun {method} {path}: {reply.status_code} {reply.text[:500]}")
        return reply.json() if reply.content else None

    def _login(self, client: httpx.Client, email: str, password: str) -> str:
        tokens = self._call(client, "POST", "/auth/login", json={"email": email, "password": password})
        return str(tokens["access_token"])

    def seed(self, records: int) -> None:
        half = records // 2
        rows = [record(i) for i in range(records)]
        with httpx.Client(base_url=self.base_url, timeout=120) as client:
            admin = self._login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            for definition in (PUBLIC, PRIVATE):
                self._call(client, "POST", "/api/v1/collections", admin, json=definition)
            self._call(client, "POST", "/data/bench_public", admin, json=rows, headers={"Prefer": "return=minimal"})
            for email, part in ((EMAIL, rows[:half]), (OTHER_EMAIL, rows[half:])):
                self._call(client, "POST", "/auth/register", json={"email": email, "password": PASSWORD})
                token = self._login(client, email, PASSWORD)
                self._call(client, "POST", "/data/bench_private", token, json=part)
            self.token = self._login(client, EMAIL, PASSWORD)
            me = self._call(client, "GET", "/auth/me", self.token)
            self.tenant_id = str(me["tenant_id"])
            listed = self._call(client, "GET", "/data/bench_public?select=id&limit=100&order=id")
            self.view_ids = [str(row["id"]) for row in listed]

    def requests(self) -> dict[str, Request]:
        auth = {"Authorization": f"Bearer {self.token}"}
        json_type = {"Content-Type": "application/json"}
        paths = tuple(f"/data/bench_public/{i}" for i in self.view_ids)
        new = {"title": "New", "body": BODY, "views": 1, "published": True}
        return {
            "list_public": Request("GET", "/data/bench_public?limit=20"),
            "list_auth": Request("GET", "/data/bench_private?limit=20", headers=auth),
            "view": Request("GET", paths[0], paths=paths),
            "create": Request(
                "POST",
                "/data/bench_private",
                headers={**auth, **json_type, "Prefer": "return=representation"},
                body=httpx.Request("POST", "/", json=new).content,
            ),
            "login": Request(
                "POST",
                "/auth/login",
                headers=json_type,
                body=httpx.Request("POST", "/", json={"email": EMAIL, "password": PASSWORD}).content,
            ),
        }
