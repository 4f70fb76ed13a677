"""Delivery guarantees against a real NATS (security checklist 28 and 29).

- NATS stopped, 100 changes committed, NATS started: every event handled
  exactly once.
- apprun killed (SIGKILL) between commit and publish: published after restart.
- Two apprun processes on one PostgreSQL: no duplicates, no gaps.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.modules import Settings
from apprun.testing.engines import NatsServer
from tests.support.accounts import PASSWORD, bearer, register
from tests.support.consumers import consumer_state, settled
from tests.support.live import LiveServer
from tests.support.outbox import unpublished
from tests.support.polling import eventually
from tests.support.test_app import TEST_ROUTES, TEST_SUBSCRIBERS, prepare

pytestmark = pytest.mark.slow


async def _recorded(db: Any) -> list[str]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT event_id FROM test_handled WHERE consumer = 'test.recorder'")
    return [r["event_id"] for r in rows]


@pytest.mark.checklist(28)
async def test_nats_down_during_100_changes_then_back(make_settings: Any, database_url: str, tmp_path: Path) -> None:
    nats_server = NatsServer(tmp_path / "nats")
    nats_server.start()
    settings: Settings = make_settings(
        database_url=database_url, pubsub_backend="nats", pubsub_nats_url=nats_server.url
    )
    db = await prepare(settings)
    app = create_app(settings, extra_routes=TEST_ROUTES, subscribers=[TEST_SUBSCRIBERS], configure_logs=False)
    try:
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            owner = await register(client)
            await eventually(lambda: _bus_up(client), "the bus UP")
            nats_server.stop()
            ids = []
            for i in range(100):
                r = await client.post(
                    "/api/v1/events", json={"type": "app.test.recorded", "data": {"i": i}}, headers=bearer(owner)
                )
                assert r.status_code == 202, r.text  # the change commits with NATS down
                ids.append(r.json()["id"])
            assert await unpublished(db) >= 100
            health = (await client.get("/.well-known/health-check")).json()
            assert health["details"]["bus"]["status"] == "DOWN"
            assert health["status"] == "DEGRADED"

            nats_server.start()  # same port, same JetStream store

            async def all_handled() -> list[str] | None:
                got = await _recorded(db)
                return got if len(got) >= 100 else None

            await eventually(all_handled, "100 events handled", timeout=60)
            await settled(db, nats_server.url, "test.recorder")
            handled = await _recorded(db)
            assert sorted(handled) == sorted(ids)  # each exactly once
            assert await unpublished(db) == 0
    finally:
        await db.close()
        nats_server.stop()


async def _bus_up(client: Any) -> bool:
    health = (await client.get("/.well-known/health-check")).json()
    return bool(health["details"].get("bus", {}).get("status") == "UP")


@pytest.mark.checklist(28)
async def test_killed_between_commit_and_publish(tmp_path: Path, database_url: str, make_settings: Any) -> None:
    nats_server = NatsServer(tmp_path / "nats")
    settings: Settings = make_settings(database_url=database_url)
    db = await prepare(settings)
    env = {"DATABASE_URL": database_url, "PUBSUB_BACKEND": "nats", "PUBSUB_NATS_URL": nats_server.url}
    try:
        # NATS is not running: every change commits, nothing can be published.
        server = LiveServer(tmp_path / "first", env, with_test_routes=True)
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            reg = await http.post("/auth/register", json={"email": "k@example.com", "password": PASSWORD})
            token = reg.json()["access_token"]
            ids = []
            for _ in range(20):
                r = await http.post(
                    "/api/v1/events", json={"type": "app.test.recorded"}, headers={"Authorization": f"Bearer {token}"}
                )
                ids.append(r.json()["id"])
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)  # no shutdown, no flush: the crash
        server.wait(10)
        assert await unpublished(db) >= 20

        nats_server.start()
        with LiveServer(tmp_path / "second", env, with_test_routes=True):

            async def all_handled() -> list[str] | None:
                got = await _recorded(db)
                return got if len(got) >= 20 else None

            await eventually(all_handled, "the 20 events handled after restart", timeout=60)
            await settled(db, nats_server.url, "test.recorder")
            assert sorted(await _recorded(db)) == sorted(ids)
    finally:
        await db.close()
        nats_server.stop()


@pytest.mark.checklist(28)
async def test_two_processes_relay_one_outbox_without_duplicates_or_gaps(
    tmp_path: Path, pg_databases: Any, make_settings: Any
) -> None:
    dsn = await pg_databases.create()
    nats_server = NatsServer(tmp_path / "nats")
    nats_server.start()
    settings: Settings = make_settings(database_url=dsn)
    db = await prepare(settings)
    # Instances of one deployment share the signing secret (each data dir would make its own).
    env = {
        "DATABASE_URL": dsn,
        "PUBSUB_BACKEND": "nats",
        "PUBSUB_NATS_URL": nats_server.url,
        "JWT_SECRET": "a shared secret of the deployment, long enough",
    }
    try:
        with (
            LiveServer(tmp_path / "a", env, with_test_routes=True) as a,
            LiveServer(tmp_path / "b", env, with_test_routes=True) as b,
        ):
            async with httpx.AsyncClient(timeout=30) as http:
                reg = await http.post(a.url + "/auth/register", json={"email": "two@example.com", "password": PASSWORD})
                tokens = reg.json()
                tenant = tokens["tenant_id"]
                headers = bearer(tokens)

                async def publish(base: str, i: int) -> str:
                    r = await http.post(
                        base + "/api/v1/events", json={"type": "app.test.recorded", "data": {"i": i}}, headers=headers
                    )
                    assert r.status_code == 202, r.text
                    return str(r.json()["id"])

                # 200 at once, half through each process …
                ids = list(await asyncio.gather(*(publish((a if i % 2 else b).url, i) for i in range(200))))
                # … then 20 one after another, alternating: these have a defined order.
                sequential = [await publish((a if i % 2 else b).url, 1000 + i) for i in range(20)]
                ids += sequential

            async def all_handled() -> list[str] | None:
                got = await _recorded(db)
                return got if len(got) >= 220 else None

            await eventually(all_handled, "220 events handled", timeout=60)
            await settled(db, nats_server.url, "test.recorder")
            assert sorted(await _recorded(db)) == sorted(ids)
            # What the bus holds: each event once, in the order of their ids.
            nc = await nats.connect(nats_server.url)
            try:
                js = nc.jetstream()
                sub = await js.subscribe(f"apprun.{tenant}.app.test.recorded", ordered_consumer=True)
                seen = []
                for _ in range(220):
                    msg = await sub.next_msg(timeout=10)
                    seen.append(msg.headers["Nats-Msg-Id"])
                with pytest.raises(nats.errors.TimeoutError):
                    await sub.next_msg(timeout=0.5)
            finally:
                await nc.close()
            assert sorted(seen) == sorted(ids)  # no duplicates, no gaps
            # Changes that committed one after the other are published in that order
            # (concurrent ones have no order to keep).
            assert [i for i in seen if i in sequential] == sequential
    finally:
        await db.close()
        nats_server.stop()


@pytest.mark.checklist(29)
async def test_a_consumer_killed_before_acking_gets_the_event_again(
    tmp_path: Path, database_url: str, make_settings: Any
) -> None:
    nats_server = NatsServer(tmp_path / "nats")
    nats_server.start()
    settings: Settings = make_settings(database_url=database_url)
    db = await prepare(settings)
    env = {
        "DATABASE_URL": database_url,
        "PUBSUB_BACKEND": "nats",
        "PUBSUB_NATS_URL": nats_server.url,
        "EVENTS_ACK_WAIT": "2",
        "JWT_SECRET": "a shared secret of the deployment, long enough",
    }
    try:
        first = LiveServer(tmp_path / "first", env, with_test_routes=True)
        first.start()
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            reg = await http.post("/auth/register", json={"email": "slow@example.com", "password": PASSWORD})
            r = await http.post("/api/v1/events", json={"type": "app.test.slow"}, headers=bearer(reg.json()))
            event_id = r.json()["id"]

        async def handling() -> bool:
            async with db.read() as conn:
                return bool(
                    await conn.fetchval(
                        "SELECT published_at IS NOT NULL FROM apprun_event_outbox WHERE id = $1", event_id
                    )
                )

        await eventually(handling, "the event published")

        async def delivered_unacked() -> bool:
            delivered, _, ack_pending = await consumer_state(nats_server.url, "test.slow")
            return delivered >= 1 and ack_pending == 1

        # The kill must land while the first delivery is in the handler's hands, or
        # there is no crash to recover from.
        await eventually(delivered_unacked, "the first delivery handed out and not acked")
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)  # dies holding the unacked delivery
        first.wait(10)
        with LiveServer(tmp_path / "second", env, with_test_routes=True):

            async def redelivered() -> list[Any] | None:
                async with db.read() as conn:
                    rows = await conn.fetch("SELECT event_id, attempt FROM test_handled WHERE consumer = 'test.slow'")
                return list(rows) or None

            rows = await eventually(redelivered, "the redelivery after AckWait", timeout=60)
            assert [(r["event_id"], r["attempt"]) for r in rows] == [(event_id, 2)]
    finally:
        await db.close()
        nats_server.stop()
