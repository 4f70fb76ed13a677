"""Health: the registry's aggregation, and the endpoints on both dialects."""

from __future__ import annotations

import asyncio
from typing import Any

from apprun.kernel.errors import DatabaseUnavailable
from apprun.kernel.health import HealthRegistry


async def _ok() -> str:
    return "fine"


async def _down() -> str:
    raise DatabaseUnavailable() from ConnectionRefusedError("connect to 10.0.0.5:5432 refused")


async def _hangs() -> str:
    await asyncio.sleep(10)
    return "never"


async def test_all_up() -> None:
    reg = HealthRegistry()
    reg.register("a", _ok)
    reg.register("b", _ok, required=False)
    report = await reg.run()
    assert report.status == "UP"
    assert report.http_status == 200
    assert report.details["a"].message == "fine"


async def test_optional_down_is_degraded_not_503() -> None:
    reg = HealthRegistry()
    reg.register("a", _ok)
    reg.register("cache", _down, required=False)
    report = await reg.run()
    assert report.status == "DEGRADED"
    assert report.http_status == 200


async def test_required_down_is_503_and_names_no_address() -> None:
    reg = HealthRegistry()
    reg.register("database", _down)
    report = await reg.run()
    assert report.status == "DOWN"
    assert report.http_status == 503
    message = report.details["database"].message
    assert message == "db.unavailable (ConnectionRefusedError)"
    assert "10.0.0.5" not in message


async def test_a_hanging_check_times_out() -> None:
    reg = HealthRegistry()
    reg.register("slow", _hangs, timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    report = await reg.run()
    assert loop.time() - start < 2
    assert report.details["slow"].status == "DOWN"
    assert "no answer" in report.details["slow"].message


async def test_endpoints(client: Any) -> None:
    r = await client.get("/.well-known/health-check")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "UP"
    db = body["details"]["database"]
    assert db["status"] == "UP"
    assert db["latency_ms"] >= 0
    assert r.headers["cache-control"] == "no-store"
    assert (await client.get("/.well-known/alive")).json() == {"status": "UP"}
