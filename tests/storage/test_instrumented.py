"""Every backend call is counted (operations, durations, bytes) and traced, in the request's trace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.support.accounts import PASSWORD, bearer
from tests.support.live import LiveServer
from tests.support.otlp import OtlpReceiver
from tests.support.polling import eventually
from tests.support.test_app import prepare


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def test_backend_calls_are_counted_and_traced(tmp_path: Path, make_settings: Any) -> None:
    database_url = f"sqlite:///{tmp_path / 'm.db'}"
    db = await prepare(make_settings(database_url=database_url))
    try:
        with OtlpReceiver() as receiver:
            env = {"DATABASE_URL": database_url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                   "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
            with LiveServer(tmp_path / "server", env) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    owner = (
                        await http.post("/auth/register", json={"email": "m@example.com", "password": PASSWORD})
                    ).json()
                    auth = bearer(owner)
                    assert (await http.post("/storage/v1/bucket", json={"id": "b"}, headers=auth)).status_code == 200
                    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
                    up = await http.post(
                        "/storage/v1/object/b/f.bin",
                        content=b"x" * 5000,
                        headers={**auth, "Content-Type": "application/octet-stream",
                                 "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
                    )  # fmt: skip
                    assert up.status_code == 200, up.text
                    down = await http.get("/storage/v1/object/b/f.bin", headers=auth)
                    assert down.content == b"x" * 5000

                    # A download's call ends when its stream does, a moment after the client has every byte.
                    async def get_counted() -> bool:
                        text = (await http.get("/metrics")).text
                        return _sample(text, "apprun_storage_operations_total", operation="get", outcome="ok") >= 1

                    await eventually(get_counted, "the download's backend call to be counted")
                    metrics = (await http.get("/metrics")).text
                spans = receiver.wait_for(lambda s: s.name == "storage put" and s.trace_id == trace_id)
                receiver.wait_for(lambda s: s.name == "storage publish" and s.trace_id == trace_id)
    finally:
        await db.close()
    assert spans[0].attributes["apprun.storage.bucket"] == "b"
    assert spans[0].attributes["apprun.storage.backend"] == "local"
    for operation in ("put", "publish", "get"):
        assert _sample(metrics, "apprun_storage_operations_total", operation=operation, outcome="ok") >= 1
        assert _sample(metrics, "apprun_storage_operation_seconds_count", operation=operation) >= 1
    assert _sample(metrics, "apprun_storage_bytes_total", direction="in") == 5000
    assert _sample(metrics, "apprun_storage_bytes_total", direction="out") == 5000
