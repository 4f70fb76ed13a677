"""The engine launchers used by tests and benchmarks work against the real binaries."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest

from apprun.testing.engines import NatsServer, PostgresCluster

pytestmark = pytest.mark.slow


def test_nats_server_starts_with_jetstream_stops_and_restarts(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    try:
        with socket.create_connection(("127.0.0.1", nats.port), timeout=2) as sock:
            greeting = sock.recv(4096)
        assert greeting.startswith(b"INFO ")
        assert b'"jetstream":true' in greeting.replace(b" ", b"")
        nats.stop()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", nats.port), timeout=1):
            pass
        nats.start()  # same port, same store
        with socket.create_connection(("127.0.0.1", nats.port), timeout=2) as sock:
            assert sock.recv(4096).startswith(b"INFO ")
    finally:
        nats.stop()
    assert nats.proc is None


def test_private_postgres_cluster_stops_and_restarts_with_its_data() -> None:
    pg = PostgresCluster()
    try:
        pg.start()

        async def write() -> None:
            conn = await asyncpg.connect(pg.dsn)
            await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
            await conn.close()

        async def read() -> int:
            conn = await asyncpg.connect(pg.dsn)
            try:
                return int(await conn.fetchval("SELECT v FROM kept"))
            finally:
                await conn.close()

        asyncio.run(write())
        pg.stop()
        with pytest.raises(OSError):
            asyncio.run(read())
        pg.start()
        assert asyncio.run(read()) == 7
    finally:
        pg.destroy()
    assert not pg.workdir.exists()
