"""apprun as a real granian server process: what `make run` starts.

These tests start ``python -m apprun serve`` and talk to it over TCP, so they
cover what in-process tests cannot: the embedded defaults, granian's workers,
multi-process metrics, SIGTERM, log lines on stdout, OTLP export.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer
from tests.support.otlp import OtlpReceiver
from tests.support.pg_databases import PgDatabases

pytestmark = pytest.mark.slow


def test_embedded_defaults_serve_health_on_sqlite(tmp_path: Path) -> None:
    with LiveServer(tmp_path) as server:
        r = httpx.get(server.url + "/.well-known/health-check")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "UP"
        assert body["details"]["database"]["status"] == "UP"
        assert body["details"]["database"]["message"].startswith("sqlite")
        info = httpx.get(server.url + "/api/v1/system/info").json()
        assert info["database"]["dialect"] == "sqlite"
        assert info["database"]["schema_revision"]
    assert (tmp_path / "data" / "apprun.db").exists()
    assert (tmp_path / "data" / "jwt_secret").stat().st_mode & 0o777 == 0o600


async def test_database_url_switches_the_same_server_to_postgres(tmp_path: Path, pg_databases: PgDatabases) -> None:
    dsn = await pg_databases.create()
    with LiveServer(tmp_path, {"DATABASE_URL": dsn}) as server:
        body = httpx.get(server.url + "/.well-known/health-check").json()
        assert body["status"] == "UP"
        assert body["details"]["database"]["message"].startswith("postgres")
        assert httpx.get(server.url + "/api/v1/system/info").json()["database"]["dialect"] == "postgres"


async def test_db_dialect_variables_switch_to_postgres(tmp_path: Path, pg_databases: PgDatabases) -> None:
    dsn = await pg_databases.create()
    name = dsn.rsplit("/", 1)[1]
    env = {"DB_DIALECT": "postgres", "DB_HOST": "127.0.0.1", "DB_PORT": "5432", "DB_USER": "postgres", "DB_NAME": name}
    with LiveServer(tmp_path, env) as server:
        body = httpx.get(server.url + "/.well-known/health-check").json()
        assert body["details"]["database"]["message"].startswith("postgres")


def test_access_log_line_and_request_id(tmp_path: Path) -> None:
    with LiveServer(tmp_path) as server:
        r = httpx.get(server.url + "/api/v1/system/info", headers={"X-Request-ID": "req-42"})
        assert r.headers["x-request-id"] == "req-42"
    lines = [
        rec for rec in server.log_records() if rec.get("event") == "http_request" and rec.get("request_id") == "req-42"
    ]
    assert len(lines) == 1, server.output()
    line = lines[0]
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/system/info"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    for key in ("tenant_id", "user_id", "trace_id", "ts", "level"):
        assert key in line


def test_internal_error_body_has_code_and_request_id_log_has_traceback(tmp_path: Path) -> None:
    with LiveServer(tmp_path, with_test_routes=True) as server:
        r = httpx.get(server.url + "/_test/boom")
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "internal.error"
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    assert "secret internals" not in r.text
    errors = [rec for rec in server.log_records() if rec.get("event") == "unhandled_exception"]
    assert len(errors) == 1, server.output()
    assert errors[0]["request_id"] == body["request_id"]
    assert "Traceback" in errors[0]["exception"]
    assert "secret internals" in errors[0]["exception"]


def test_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with LiveServer(tmp_path, {"HTTP_MAX_BODY_BYTES": "4096"}, with_test_routes=True) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = (
            b"POST /_test/echo HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1024
        try:
            sock.sendall(head)
            for _ in range(8):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the body is all sent
        reply = b""
        while b"http.payload_too_large" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"http.payload_too_large" in reply


def test_metrics_count_across_two_workers(tmp_path: Path) -> None:
    with LiveServer(tmp_path, workers=2) as server:
        # Fresh connections, so both workers serve some of them.
        for _ in range(30):
            assert httpx.get(server.url + "/api/v1/system/info").status_code == 200
        text = httpx.get(server.url + "/metrics").text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith('apprun_http_requests_total{method="GET",route="/api/v1/system/info"')
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 30.0, text
    pids = {
        line.split('pid="')[1].split('"')[0] for line in text.splitlines() if line.startswith("apprun_process_resident")
    }
    assert len(pids) == 2, text
    assert "apprun_http_request_duration_seconds_bucket" in text
    assert "apprun_db_pool_connections" in text


def test_sigterm_finishes_in_flight_requests_then_closes_resources(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, with_test_routes=True)
    server.start()
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["response"] = httpx.get(server.url + "/_test/slow?seconds=1.5", timeout=10)
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    server.wait_for_log(lambda rec: rec.get("event") == "test_slow_started")  # the request is in flight
    server.terminate()
    thread.join(15)
    code = server.wait(20)
    assert "error" not in result, f"{result.get('error')!r}\n{server.output()}"
    assert result["response"].status_code == 200
    assert result["response"].json() == {"slept": 1.5}
    assert code == 0, server.output()
    events = [rec.get("event") for rec in server.log_records()]
    assert "apprun_stopped" in events, server.output()
    served = max(i for i, e in enumerate(events) if e == "http_request")
    assert served < events.index("apprun_stopped")


def test_spans_reach_an_otlp_receiver_with_the_log_trace_id(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with LiveServer(tmp_path, env) as server:
            r = httpx.get(server.url + "/api/v1/system/info", headers={"X-Request-ID": "traced-1"})
            assert r.status_code == 200
            line = server.wait_for_log(
                lambda rec: rec.get("event") == "http_request" and rec.get("request_id") == "traced-1"
            )
            trace_id = line["trace_id"]
            assert trace_id and len(trace_id) == 32
            http_span = receiver.wait_for(lambda s: s.trace_id == trace_id and s.name == "GET /api/v1/system/info")[0]
            sql_spans = receiver.wait_for(lambda s: s.trace_id == trace_id and s.name == "SELECT")
            # Incoming W3C trace context is continued, not replaced.
            parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
            httpx.get(
                server.url + "/.well-known/alive",
                headers={"traceparent": f"00-{parent_trace}-00f067aa0ba902b7-01"},
            )
            continued = receiver.wait_for(lambda s: s.trace_id == parent_trace)
    assert http_span.attributes["http.route"] == "/api/v1/system/info"
    assert http_span.attributes["http.response.status_code"] == 200
    assert http_span.service == "apprun"
    assert all(s.parent_span_id == http_span.span_id for s in sql_spans)
    assert sql_spans[0].attributes["db.system"] == "sqlite"
    assert "apprun_meta" in " ".join(str(s.attributes.get("db.statement")) for s in sql_spans)
    assert continued[0].parent_span_id == "00f067aa0ba902b7"


def test_prod_mode_without_secret_refuses_to_start(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"APPRUN_ENV": "prod"})
    server.start(expect_ready=False)
    code = server.wait(30)
    assert code == 2
    assert "APPRUN_ENV=prod needs JWT_SECRET" in server.output()
