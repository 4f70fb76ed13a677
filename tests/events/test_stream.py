"""The live tail (SSE), metrics, and trace context carried by events; on a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from apprun.testing.engines import NatsServer
from tests.support.accounts import PASSWORD, bearer
from tests.support.live import LiveServer
from tests.support.otlp import OtlpReceiver
from tests.support.polling import eventually
from tests.support.sse import SseReader
from tests.support.test_app import prepare

pytestmark = pytest.mark.slow


async def _read_events(reader: SseReader, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < count:
        message = await reader.next(timeout=20)
        if message.event is not None:
            events.append({"event": message.event, "id": message.id, "data": message.json()})
    return events


@pytest.mark.parametrize("bus", ["memory", "nats"])
async def test_the_live_tail_streams_new_events_of_the_tenant(
    tmp_path: Path, database_url: str, make_settings: Any, bus: str
) -> None:
    env = {"DATABASE_URL": database_url, "PUBSUB_BACKEND": bus}
    nats_server = None
    if bus == "nats":
        nats_server = NatsServer(tmp_path / "nats")
        nats_server.start()
        env["PUBSUB_NATS_URL"] = nats_server.url
    db = await prepare(make_settings(database_url=database_url))
    try:
        # Two workers: with the in-process bus, the tail still follows events
        # relayed by whichever worker leads.
        with LiveServer(tmp_path / "server", env, workers=2) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                owner = (
                    await http.post("/auth/register", json={"email": "t@example.com", "password": PASSWORD})
                ).json()
                other = (
                    await http.post("/auth/register", json={"email": "o@example.com", "password": PASSWORD})
                ).json()
                assert (await http.get("/api/v1/events/stream")).status_code == 401
                async with http.stream(
                    "GET", "/api/v1/events/stream?type=app.order.created", headers=bearer(owner)
                ) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    # The opening comment goes out once the tail is listening.
                    reader = SseReader(response)
                    first = await reader.next(timeout=20)
                    assert first.comment == "apprun event stream", first
                    for body, who in (
                        ({"type": "app.order.created", "data": {"n": 1}}, owner),
                        ({"type": "app.order.cancelled", "data": {"n": 2}}, owner),  # another type
                        ({"type": "app.order.created", "data": {"n": 3}}, other),  # another tenant
                        ({"type": "app.order.created", "data": {"n": 4}}, owner),
                    ):
                        r = await http.post("/api/v1/events", json=body, headers=bearer(who))
                        assert r.status_code == 202
                    got = await _read_events(reader, 2)
        assert [e["data"]["data"]["n"] for e in got] == [1, 4]
        assert all(e["event"] == "app.order.created" for e in got)
        assert all(e["data"]["tenantid"] == owner["tenant_id"] for e in got)
        assert got[0]["id"] == got[0]["data"]["id"]
    finally:
        await db.close()
        if nats_server is not None:
            nats_server.stop()


async def test_an_event_carries_the_trace_of_the_request_that_caused_it(
    tmp_path: Path, database_url: str, make_settings: Any
) -> None:
    db = await prepare(make_settings(database_url=database_url))
    try:
        with OtlpReceiver() as receiver:
            env = {
                "DATABASE_URL": database_url,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            with LiveServer(tmp_path / "server", env, with_test_routes=True) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    owner = (
                        await http.post("/auth/register", json={"email": "tr@example.com", "password": PASSWORD})
                    ).json()
                    trace_id = "0af7651916cd43dd8448eb211c80319c"
                    r = await http.post(
                        "/api/v1/events",
                        json={"type": "app.test.recorded"},
                        headers={**bearer(owner), "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
                    )
                    event_id = r.json()["id"]
                    history = (await http.get("/api/v1/events?type=app.test.recorded", headers=bearer(owner))).json()
                assert history[0]["traceparent"].split("-")[1] == trace_id

                handler_spans = receiver.wait_for(
                    lambda s: (
                        s.name == "event app.test.recorded" and s.attributes.get("messaging.message.id") == event_id
                    )
                )
                assert handler_spans[0].trace_id == trace_id
                metrics = httpx.get(server.url + "/metrics").text
        assert 'apprun_events_published_total{type="app.test.recorded"}' in metrics
        assert 'apprun_events_delivered_total{consumer="test.recorder",outcome="ok"}' in metrics
        assert "apprun_events_outbox_lag_seconds" in metrics
    finally:
        await db.close()


async def test_history_survives_the_relay(tmp_path: Path, database_url: str, make_settings: Any) -> None:
    """Published events stay readable (the outbox is the history) until the retention prunes them."""
    db = await prepare(make_settings(database_url=database_url))
    try:
        with LiveServer(tmp_path / "server", {"DATABASE_URL": database_url}) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                owner = (
                    await http.post("/auth/register", json={"email": "h@example.com", "password": PASSWORD})
                ).json()
                await http.post("/api/v1/events", json={"type": "app.kept.one"}, headers=bearer(owner))

                async def published() -> bool:
                    async with db.read() as conn:
                        return bool(
                            await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE published_at IS NULL")
                            == 0
                        )

                await eventually(published, "everything published")
                history = (await http.get("/api/v1/events", headers=bearer(owner))).json()
        assert "app.kept.one" in [e["type"] for e in history]
        assert all(e["published"] for e in history)
    finally:
        await db.close()
