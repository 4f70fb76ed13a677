"""Upserts on every kind of conflict target: a unique field, a unique index of several fields (named in
any order), a unique index on the owner, and a ``global`` collection (no tenant in the key).

The races are in test_upsert_races.py; these pin what ``on_conflict`` may name and how it is matched.
"""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.data.hooks import Hooks, WriteEvent
from apprun.modules import Settings
from tests.support.accounts import bearer, make_admin_on, register
from tests.support.schema import define

ALL = dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated")
MERGE = {"Prefer": "resolution=merge-duplicates,return=representation"}

COUNTRIES = {
    "name": "countries",
    "scope": "global",
    "fields": [{"name": "code", "type": "text", "unique": True}, {"name": "label", "type": "text"}],
    "rules": ALL,
}
PAIRS = {
    "name": "pairs",
    "fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "text"}, {"name": "v", "type": "integer"}],
    "indexes": [{"fields": ["a", "b"], "unique": True}],
    "rules": ALL,
}
#: One row per user: the unique index is on the owner, which the server sets (clients never send it).
PREFS = {
    "name": "prefs",
    "fields": [{"name": "theme", "type": "text"}],
    "indexes": [{"fields": ["created_by"], "unique": True}],
    "rules": {**ALL, "list": "owner", "view": "owner", "update": "owner", "delete": "owner"},
}


async def _kinds(db: Any, collection: str) -> list[str]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT type, payload FROM apprun_event_outbox ORDER BY id")
    events = [json.loads(r["payload"]) for r in rows if r["type"].startswith("apprun.record.")]
    return [e["type"].rsplit(".", 1)[1] for e in events if e["data"]["collection"] == collection]


async def test_upsert_conflict_targets(client: Any, admin: dict[str, Any], db: Any) -> None:
    for definition in (COUNTRIES, PAIRS, PREFS):
        await define(client, admin, definition)
    alice, carol = await register(client), await register(client)  # two tenants

    async def upsert(who: dict[str, Any], collection: str, on_conflict: str, body: dict[str, Any]) -> Any:
        r = await client.post(
            f"/data/{collection}", params={"on_conflict": on_conflict}, json=body, headers={**bearer(who), **MERGE}
        )
        assert r.status_code == 201, r.text
        return r.json()

    # A global collection's key has no tenant: a second tenant's upsert meets the first one's row.
    first = await upsert(alice, "countries", "code", {"code": "fr", "label": "France"})
    second = await upsert(carol, "countries", "code", {"code": "fr", "label": "République française"})
    assert second[0]["id"] == first[0]["id"] and second[0]["label"] == "République française"
    assert await _kinds(db, "countries") == ["created", "updated"]

    # A unique index of two fields, named in either order.
    one = await upsert(alice, "pairs", "a,b", {"a": "x", "b": "y", "v": 1})
    two = await upsert(alice, "pairs", "b,a", {"a": "x", "b": "y", "v": 2})
    assert two == [{**one[0], "v": 2, "updated_at": two[0]["updated_at"]}]
    other = await upsert(carol, "pairs", "a,b", {"a": "x", "b": "y", "v": 3})  # carol's tenant: a row of its own
    assert other[0]["id"] != one[0]["id"]
    assert await _kinds(db, "pairs") == ["created", "updated", "created"]

    # The owner as the key: the server's value for it is what is matched.
    mine = await upsert(alice, "prefs", "created_by", {"theme": "dark"})
    again = await upsert(alice, "prefs", "created_by", {"theme": "light"})
    theirs = await upsert(carol, "prefs", "created_by", {"theme": "dark"})
    assert again[0]["id"] == mine[0]["id"] and again[0]["theme"] == "light"
    assert theirs[0]["id"] != mine[0]["id"]
    assert await _kinds(db, "prefs") == ["created", "updated", "created"]


async def test_on_conflict_must_name_one_unique_constraint(client: Any, admin: dict[str, Any]) -> None:
    await define(client, admin, PAIRS)
    user = await register(client)
    for target in ("a", "tenant_id,a,b", "id", "a,b,v", "tenant_id"):
        r = await client.post(
            "/data/pairs", params={"on_conflict": target}, json={"a": "x", "b": "y"}, headers={**bearer(user), **MERGE}
        )
        assert r.status_code == 400, (target, r.text)
        assert r.json()["code"] == "data.no_unique_constraint", target


async def test_an_upsert_runs_the_create_hooks_or_the_update_hooks(settings: Settings) -> None:
    """A new key goes through the create chain (what its hook writes stays), an existing one through update's."""
    calls: list[str] = []
    hooks = Hooks()

    @hooks.on_create("pairs")
    async def on_create(event: WriteEvent) -> None:
        calls.append(f"create {event.data['v']}")
        event.data["b"] = event.data["b"].upper()  # the key as the hook makes it is the key written
        await event.next()
        assert event.record is not None
        calls.append(f"created {event.record['b']}")

    @hooks.on_update("pairs")
    async def on_update(event: WriteEvent) -> None:
        assert event.old is not None
        await event.next()
        assert event.record is not None
        calls.append(f"update {event.old['v']}->{event.record['v']}")

    app = create_app(settings, hooks=hooks, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        admin = await make_admin_on(client, settings)
        await define(client, admin, PAIRS)
        user = await register(client)
        for v, b in ((1, "y"), (2, "Y"), (3, "Y")):
            r = await client.post(
                "/data/pairs?on_conflict=a,b", json={"a": "x", "b": b, "v": v}, headers={**bearer(user), **MERGE}
            )
            assert r.status_code == 201, r.text
        rows = (await client.get("/data/pairs?select=a,b,v", headers=bearer(user))).json()
    assert rows == [{"a": "x", "b": "Y", "v": 3}]
    assert calls == ["create 1", "created Y", "update 1->2", "update 2->3"]
