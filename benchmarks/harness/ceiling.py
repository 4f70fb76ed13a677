"""The ceiling as a system: `ceiling_app` under granian on apprun's own database."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.harness.apprun_system import Apprun
from benchmarks.harness.common import EngineError, Request, System, stop_group, wait_http

__all__ = ["Ceiling"]


class Ceiling(System):
    """Raw SQL behind a bare ASGI app, reading and writing the tables ``target`` (an `Apprun`) seeded."""

    def __init__(self, target: Apprun) -> None:
        super().__init__(target.workdir / "ceiling")
        self.target = target
        self.workers = target.workers
        self.name = f"ceiling_{target.dialect}"
        db = "SQLite" if target.dialect == "sqlite" else "PostgreSQL"
        driver = "sqlite3" if target.dialect == "sqlite" else "asyncpg"
        self.label = f"ceiling ({db}, bare ASGI + {driver}, {self.workers} workers)"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start after the target is seeded (it needs the tenant the bench user writes in)."""
        env = dict(os.environ)
        env.update(
            CEILING_DIALECT=self.target.dialect,
            CEILING_SQLITE=str(self.target.workdir / "data" / "apprun.db"),
            CEILING_PG_DATABASE=self.target.db_name,
            CEILING_TENANT=self.target.tenant_id,
        )
        binary = str(os.path.join(os.path.dirname(sys.executable), "granian"))
        command = [binary, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--no-ws", "benchmarks.harness.ceiling_app:app"]
        log = open(self.workdir / "ceiling.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd()
        )
        log.close()
        try:
            wait_http(f"{self.base_url}/alive", timeout=30)
        except EngineError:
            self.stop()
            raise

    def seed(self, records: int) -> None:
        """Nothing: the ceiling reads what apprun seeded."""

    def requests(self) -> dict[str, Request]:
        theirs = self.target.requests()
        view = tuple(p.replace("/data/bench_public/", "/view/") for p in theirs["view"].paths)
        return {
            "list_public": Request("GET", "/list_public"),
            "list_auth": Request("GET", "/list_auth"),
            "view": Request("GET", view[0], paths=view),
            "create": Request(
                "POST", "/create", headers={"Content-Type": "application/json"}, body=theirs["create"].body
            ),
            "login": Request("POST", "/login", headers={"Content-Type": "application/json"}, body=theirs["login"].body),
        }

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace=15)
            self.proc = None
