"""The outbox, relay, subscribers and events API, on each bus and each database."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import nats
import pytest

from apprun.app import wiring_of
from apprun.events import emit, make_event
from apprun.events.service import Events
from tests.support.accounts import bearer, join, register
from tests.support.polling import eventually


async def _handled(db: Any, consumer: str) -> list[Any]:
    async with db.read() as conn:
        return list(
            await conn.fetch(
                "SELECT event_id, attempt FROM test_handled WHERE consumer = $1 ORDER BY event_id", consumer
            )
        )


async def _publish(client: Any, tokens: dict[str, Any], event_type: str, data: Any = None) -> dict[str, Any]:
    r = await client.post("/api/v1/events", json={"type": event_type, "data": data}, headers=bearer(tokens))
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_published_event_is_handled_exactly_once(events_env: dict[str, Any]) -> None:
    client, db = events_env["client"], events_env["db"]
    owner = await register(client)
    ids = [(await _publish(client, owner, "app.test.recorded", {"n": i}))["id"] for i in range(5)]

    async def all_handled() -> list[Any] | None:
        rows = await _handled(db, "test.recorder")
        return rows if len(rows) >= 5 else None

    rows = await eventually(all_handled, "5 handled events")
    assert sorted(r["event_id"] for r in rows) == sorted(ids)
    async with db.read() as conn:
        unpublished = await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE published_at IS NULL")
    assert unpublished == 0


async def test_a_rolled_back_transaction_emits_nothing(events_env: dict[str, Any]) -> None:
    client, db = events_env["client"], events_env["db"]
    owner = await register(client)
    doomed = make_event("app.test.recorded", tenant_id=owner["tenant_id"], data={"doomed": True})
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await emit(conn, doomed)
            raise RuntimeError("the change fails after emitting")
    kept = make_event("app.test.recorded", tenant_id=owner["tenant_id"], data={"kept": True})
    async with db.transaction() as conn:
        await emit(conn, kept)

    async def kept_handled() -> list[Any] | None:
        rows = await _handled(db, "test.recorder")
        return rows or None

    rows = await eventually(kept_handled, "the committed event handled")
    assert [r["event_id"] for r in rows] == [kept.id]
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE id = $1", doomed.id) == 0


@pytest.mark.checklist(29)
async def test_a_failed_delivery_is_retried_and_its_writes_undone(events_env: dict[str, Any]) -> None:
    client, db = events_env["client"], events_env["db"]
    owner = await register(client)
    event_id = (await _publish(client, owner, "app.test.flaky"))["id"]

    async def handled() -> list[Any] | None:
        rows = await _handled(db, "test.flaky")
        return rows or None

    rows = await eventually(handled, "the flaky event handled on its second delivery")
    # The first delivery's insert rolled back with the failure; only the second stands.
    assert [(r["event_id"], r["attempt"]) for r in rows] == [(event_id, 2)]


@pytest.mark.checklist(29)
async def test_a_poison_event_lands_in_the_dead_letters(events_env: dict[str, Any]) -> None:
    client, app, nats_server = events_env["client"], events_env["app"], events_env["nats"]
    owner = await register(client)
    tenant = owner["tenant_id"]
    event_id = (await _publish(client, owner, "app.test.poison", {"x": 1}))["id"]
    if nats_server is None:
        bus = wiring_of(app).get(Events).bus

        async def parked() -> list[Any] | None:
            return [d for d in bus.dead_letters if d.event.id == event_id] or None

        [dead] = await eventually(parked, "the dead letter")
        assert (dead.consumer, dead.attempts) == ("test.poison", 3)
        assert "cannot handle" in dead.reason
        return
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()

        async def parked_in_nats() -> Any:
            try:
                return await js.get_last_msg("APPRUN", f"apprun.{tenant}.deadletter")
            except nats.js.errors.NotFoundError:
                return None

        msg = await eventually(parked_in_nats, "the dead letter on NATS")
    finally:
        await nc.close()
    assert msg.headers["Apprun-Consumer"] == "test.poison"
    assert msg.headers["Apprun-Deliveries"] == "3"
    assert "cannot handle" in msg.headers["Apprun-Reason"]
    assert json.loads(msg.data)["id"] == event_id


@pytest.mark.checklist(28, 29)
async def test_republishing_after_a_crash_changes_nothing(events_env: dict[str, Any]) -> None:
    """A relay that died after publishing, before marking, publishes the rows again."""
    client, db = events_env["client"], events_env["db"]
    owner = await register(client)
    ids = {(await _publish(client, owner, "app.test.recorded"))["id"] for _ in range(3)}

    async def three() -> list[Any] | None:
        rows = await _handled(db, "test.recorder")
        return rows if len(rows) == 3 else None

    await eventually(three, "3 handled events")
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_event_outbox SET published_at = NULL WHERE type = 'app.test.recorded'")

    async def republished() -> bool:
        async with db.read() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM apprun_event_outbox WHERE published_at IS NULL") == 0)

    await eventually(republished, "the rows published again")
    # One more event behind them: once it is handled, the repeats had their chance.
    last = (await _publish(client, owner, "app.test.recorded"))["id"]

    async def four() -> list[Any] | None:
        rows = await _handled(db, "test.recorder")
        return rows if last in {r["event_id"] for r in rows} else None

    rows = await eventually(four, "the last event handled")
    assert sorted(r["event_id"] for r in rows) == sorted({*ids, last})


async def test_platform_events_come_from_auth(events_env: dict[str, Any]) -> None:
    client, db = events_env["client"], events_env["db"]
    owner = await register(client)
    await client.post("/auth/login", json={"email": owner["user"]["email"], "password": "wrong password!!"})
    friend = await register(client)
    await join(client, db, owner, friend, "viewer")
    history = (await client.get("/api/v1/events?limit=50", headers=bearer(owner))).json()
    types = [e["type"] for e in history]
    assert "apprun.user.registered" in types
    assert "apprun.tenant.member_added" in types
    added = next(e for e in history if e["type"] == "apprun.tenant.member_added")
    assert added["tenantid"] == owner["tenant_id"]
    assert added["data"]["role"] == "viewer"
    # A failed sign-in belongs to no tenant: a platform event, not in the tenant's history.
    assert "apprun.user.login_failed" not in types
    async with db.read() as conn:
        failed = await conn.fetchrow(
            "SELECT tenant_id, payload FROM apprun_event_outbox WHERE type = 'apprun.user.login_failed'"
        )
    assert failed is not None
    assert failed["tenant_id"] is None


async def test_the_envelope_is_cloudevents(events_env: dict[str, Any]) -> None:
    client, settings = events_env["client"], events_env["settings"]
    owner = await register(client)
    published = await _publish(client, owner, "app.order.created", {"order": 7})
    [event] = (await client.get("/api/v1/events?type=app.order.created", headers=bearer(owner))).json()
    assert event["id"] == published["id"]
    uuid.UUID(event["id"])
    assert event["specversion"] == "1.0"
    assert event["source"] == f"apprun/{settings.instance}"
    assert event["type"] == "app.order.created"
    assert event["datacontenttype"] == "application/json"
    assert event["tenantid"] == owner["tenant_id"]
    assert event["time"].endswith("Z")
    assert event["data"] == {"order": 7}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "apprun.user.registered"}, 400, "events.type_not_allowed"),
        ({"type": "app"}, 400, "events.invalid_type"),
        ({"type": "app.Bad Type"}, 400, "events.invalid_type"),
        ({"type": "app.big", "data": "x" * 70_000}, 400, "events.data_too_large"),
        ({"type": "app.ok", "tenantid": "someone-else"}, 400, "request.invalid"),
    ],
)
async def test_publishing_refusals(events_env: dict[str, Any], body: dict[str, Any], status: int, code: str) -> None:
    client = events_env["client"]
    owner = await register(client)
    r = await client.post("/api/v1/events", json=body, headers=bearer(owner))
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


async def test_who_may_publish_and_read(events_env: dict[str, Any]) -> None:
    client = events_env["client"]
    owner = await register(client)
    viewer = await register(client)
    await join(client, events_env["db"], owner, viewer, "viewer")
    viewer_in = (
        await client.post("/auth/tenant", json={"tenant_id": owner["tenant_id"]}, headers=bearer(viewer))
    ).json()
    assert (await client.post("/api/v1/events", json={"type": "app.x.y"}, headers=bearer(viewer_in))).status_code == 403
    assert (await client.get("/api/v1/events", headers=bearer(viewer_in))).status_code == 200
    assert (await client.post("/api/v1/events", json={"type": "app.x.y"})).status_code == 401
    # Another tenant's owner never sees this tenant's events.
    other = await register(client)
    await _publish(client, owner, "app.secret.thing")
    theirs = (await client.get("/api/v1/events", headers=bearer(other))).json()
    assert all(e["tenantid"] == other["tenant_id"] for e in theirs)


async def test_history_filters(events_env: dict[str, Any]) -> None:
    client = events_env["client"]
    owner = await register(client)
    await _publish(client, owner, "app.a.one")
    await asyncio.sleep(0.01)
    mid = (await client.get("/api/v1/events?limit=1", headers=bearer(owner))).json()[0]["time"]
    await asyncio.sleep(0.01)
    await _publish(client, owner, "app.b.two")
    only_b = (await client.get("/api/v1/events?type=app.b.two", headers=bearer(owner))).json()
    assert [e["type"] for e in only_b] == ["app.b.two"]
    after = (await client.get(f"/api/v1/events?since={mid}", headers=bearer(owner))).json()
    assert "app.b.two" in [e["type"] for e in after]
    assert "apprun.user.registered" not in [e["type"] for e in after]
    bad = await client.get("/api/v1/events?since=yesterday", headers=bearer(owner))
    assert bad.status_code == 400


async def test_the_relay_prunes_old_history(make_settings: Any, database_url: str) -> None:
    import datetime as dt

    from apprun.events.memory_bus import MemoryBus
    from apprun.events.outbox import Relay
    from tests.support.test_app import prepare

    settings = make_settings(database_url=database_url)
    db = await prepare(settings)
    try:
        old = make_event("app.old.one", tenant_id="t")
        new = make_event("app.new.one", tenant_id="t")
        waiting = make_event("app.waiting.one", tenant_id="t")
        async with db.transaction() as conn:
            for event in (old, new, waiting):
                await emit(conn, event)
            long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
            await conn.execute("UPDATE apprun_event_outbox SET published_at = $1 WHERE id = $2", long_ago, old.id)
            await conn.execute(
                "UPDATE apprun_event_outbox SET published_at = $1 WHERE id = $2", dt.datetime.now(dt.UTC), new.id
            )
            await conn.execute(
                "INSERT INTO apprun_event_processed (consumer, event_id, processed_at) VALUES ($1, $2, $3)",
                "c",
                old.id,
                long_ago,
            )
        relay = Relay(db, settings.database, MemoryBus(), retention_days=7)
        await relay._maybe_prune()
        async with db.read() as conn:
            left = {r["id"] for r in await conn.fetch("SELECT id FROM apprun_event_outbox")}
            markers = await conn.fetchval("SELECT count(*) FROM apprun_event_processed")
        # Published and older than the retention: gone. Recent, or not yet published: kept.
        assert left == {new.id, waiting.id}
        assert markers == 0
    finally:
        await db.close()
