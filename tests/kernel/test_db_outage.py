"""PostgreSQL stopped under a running apprun, then started again.

The database is a private PostgreSQL cluster started for this test (the
shared one must stay up for the other tests), stopped with a fast shutdown
while apprun serves, and started again on the same port and data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from apprun.testing.engines import PostgresCluster
from tests.support.live import LiveServer

pytestmark = pytest.mark.slow

POOL_TIMEOUT = 2.0


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    pg = PostgresCluster()
    pg.start()

    async def create() -> None:
        conn = await asyncpg.connect(pg.dsn)
        await conn.execute("CREATE DATABASE apprun")
        await conn.close()

    asyncio.run(create())
    yield pg
    pg.destroy()


@pytest.mark.checklist(30)
def test_database_outage_and_recovery(tmp_path: Path, cluster: PostgresCluster) -> None:
    env = {
        "DATABASE_URL": cluster.dsn.rsplit("/", 1)[0] + "/apprun",
        "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "DB_CONNECT_TIMEOUT": "1",
    }
    with LiveServer(tmp_path, env) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        assert client.get("/api/v1/system/info").status_code == 200
        assert client.get("/.well-known/health-check").json()["status"] == "UP"

        cluster.stop()

        health = client.get("/.well-known/health-check")
        assert health.status_code == 503
        assert health.json()["status"] == "DOWN"
        assert health.json()["details"]["database"]["status"] == "DOWN"
        assert "127.0.0.1" not in health.text  # the public report names no hosts
        assert client.get("/.well-known/alive").status_code == 200

        start = time.monotonic()
        down = client.get("/api/v1/system/info", headers={"Accept-Language": "zh-CN"})
        elapsed = time.monotonic() - start
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "db.unavailable"
        assert down.json()["message"] == "数据库暂时不可用，请稍后重试。"
        assert down.headers["retry-after"] == "1"
        assert elapsed < POOL_TIMEOUT + 1.0

        cluster.start()

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if client.get("/api/v1/system/info").status_code == 200:
                break
            time.sleep(0.2)
        assert client.get("/api/v1/system/info").status_code == 200
        assert client.get("/.well-known/health-check").json()["status"] == "UP"
        client.close()
    warnings = [r for r in server.log_records() if r.get("event") == "request_failed"]
    assert warnings and warnings[0]["code"] == "db.unavailable"
    assert warnings[0]["cause"]  # the cause is in the log, not the reply
