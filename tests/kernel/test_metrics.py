"""Prometheus metrics in one process (the multi-worker case is in test_server)."""

from __future__ import annotations

from typing import Any


def _sample(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in:\n{text}")


async def test_a_request_is_counted_with_its_route_template(client: Any) -> None:
    await client.get("/api/v1/system/info")
    await client.get("/no/such/thing")
    text = (await client.get("/metrics")).text
    assert _sample(text, 'apprun_http_requests_total{method="GET",route="/api/v1/system/info",status="200"}') == 1
    # Unknown paths share one label value, so scanners cannot blow up cardinality.
    assert _sample(text, 'apprun_http_requests_total{method="GET",route="<unmatched>",status="404"}') == 1
    assert _sample(text, 'apprun_http_request_duration_seconds_count{method="GET",route="/api/v1/system/info"}') == 1
    assert _sample(text, "apprun_db_pool_max_connections") >= 1
    assert _sample(text, "apprun_db_pool_connections") >= 1
    assert _sample(text, "process_resident_memory_bytes") > 0
    assert _sample(text, "apprun_process_resident_memory_bytes") > 0


async def test_metrics_content_type(client: Any) -> None:
    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")


async def test_in_flight_gauge_and_single_charset(client: Any) -> None:
    r = await client.get("/metrics")
    # The scrape itself is in flight while the body is rendered.
    assert _sample(r.text, "apprun_http_requests_in_flight") == 1
    assert r.headers["content-type"].count("charset") == 1


async def test_metrics_can_be_switched_off(make_settings: Any, tmp_path: Any) -> None:
    from litestar.testing import AsyncTestClient

    from apprun.app import create_app

    app = create_app(
        make_settings(database_url=f"sqlite:///{tmp_path / 'm.db'}", metrics_enabled=False), configure_logs=False
    )
    async with AsyncTestClient(app=app) as c:
        assert (await c.get("/metrics")).status_code == 404
