"""Writes: all-or-nothing bulk inserts, upserts, PUT, Prefer, events per row, hooks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app, wiring_of
from apprun.data.hooks import Hooks, WriteEvent
from apprun.data.schema.catalog import Catalog
from apprun.kernel.errors import BadRequest
from apprun.modules import Settings
from tests.support.accounts import bearer, make_admin, make_admin_on, register
from tests.support.schema import define

ITEMS = {
    "name": "items",
    "fields": [
        {"name": "sku", "type": "text", "required": True, "unique": True},
        {"name": "label", "type": "text", "max_length": 20},
        {"name": "qty", "type": "integer", "min": 0, "default": 0},
    ],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
REPR = {"Prefer": "return=representation"}


async def _events(db: Any, kind: str | None = None) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT type, payload FROM apprun_event_outbox ORDER BY id")
    out = [json.loads(r["payload"]) for r in rows if r["type"].startswith("apprun.record.")]
    return [e for e in out if kind is None or e["type"] == f"apprun.record.{kind}"]


async def _count(db: Any, table: str = "items") -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))  # noqa: S608 - a test's own table name


async def test_bulk_insert_is_all_or_nothing_and_emits_one_event_per_row(
    client: Any, admin: dict[str, Any], db: Any
) -> None:
    await define(client, admin, ITEMS)
    user = await register(client)
    h = {**bearer(user), **REPR}
    bad = [{"sku": "a"}, {"sku": "b", "qty": -1}, {"sku": "c", "label": "x" * 50}]
    r = await client.post("/data/items", json=bad, headers=h)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "data.validation_failed"
    assert set(body["details"]["rows"]) == {"1", "2"}
    assert body["details"]["rows"]["1"]["qty"][0]["code"] == "data.too_small"
    assert await _count(db) == 0
    assert await _events(db) == []

    # A database refusal half-way (a duplicate in the batch) also leaves nothing.
    r = await client.post("/data/items", json=[{"sku": "a"}, {"sku": "a"}], headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "data.unique_violation"
    assert await _count(db) == 0
    assert await _events(db) == []

    r = await client.post("/data/items", json=[{"sku": f"s{i}", "qty": i} for i in range(5)], headers=h)
    assert r.status_code == 201, r.text
    rows = r.json()
    assert [row["sku"] for row in rows] == ["s0", "s1", "s2", "s3", "s4"]  # the body's order
    created = await _events(db, "created")
    assert len(created) == 5
    assert [e["data"]["record"]["sku"] for e in created] == ["s0", "s1", "s2", "s3", "s4"]
    assert all(e["tenantid"] == user["tenant_id"] and e["data"]["collection"] == "items" for e in created)
    assert all(e["data"]["old"] is None for e in created)
    assert created[0]["subject"] == f"items/{rows[0]['id']}"


async def test_updates_and_deletes_emit_old_and_new(client: Any, admin: dict[str, Any], db: Any) -> None:
    await define(client, admin, ITEMS)
    user = await register(client)
    h = {**bearer(user), **REPR}
    await client.post("/data/items", json=[{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], headers=h)

    r = await client.patch("/data/items?qty=gte.1", json={"label": "seen"}, headers=h)
    assert r.status_code == 200, r.text
    assert [row["label"] for row in r.json()] == ["seen", "seen"]
    updated = await _events(db, "updated")
    assert len(updated) == 2
    assert {e["data"]["old"]["label"] for e in updated} == {None}
    assert {e["data"]["record"]["label"] for e in updated} == {"seen"}
    assert updated[0]["data"]["record"]["updated_at"] > updated[0]["data"]["old"]["updated_at"]

    r = await client.delete("/data/items?sku=eq.a", headers=h)
    assert r.status_code == 200
    assert [row["sku"] for row in r.json()] == ["a"]
    deleted = await _events(db, "deleted")
    assert len(deleted) == 1
    assert deleted[0]["data"]["record"] is None
    assert deleted[0]["data"]["old"]["sku"] == "a"

    # A write that matches nothing emits nothing.
    r = await client.patch("/data/items?sku=eq.zzz", json={"qty": 5}, headers=bearer(user))
    assert r.status_code == 204
    assert len(await _events(db)) == 5


async def test_prefer_return_and_unfiltered_writes(client: Any, admin: dict[str, Any]) -> None:
    await define(client, admin, ITEMS)
    user = await register(client)
    h = bearer(user)
    r = await client.post("/data/items", json={"sku": "m"}, headers=h)
    assert r.status_code == 201
    assert r.text == ""
    r = await client.post("/data/items", json={"sku": "h"}, headers={**h, "Prefer": "return=headers-only"})
    assert r.status_code == 201
    assert r.headers["location"].startswith("/data/items?id=eq.")
    assert r.headers["preference-applied"] == "return=headers-only"
    r = await client.post(
        "/data/items?select=sku,qty", json={"sku": "r"}, headers={**h, "Prefer": "return=representation"}
    )
    assert r.json() == [{"sku": "r", "qty": 0}]
    r = await client.post(
        "/data/items",
        json={"sku": "o"},
        headers={**h, **REPR, "Accept": "application/vnd.pgrst.object+json"},
    )
    assert r.status_code == 201
    assert r.json()["sku"] == "o"

    # A PATCH or DELETE without a filter would touch every row: refused.
    for method in ("patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"qty": 1}} if method == "patch" else {}
        r = await getattr(client, method)("/data/items", headers=h, **kwargs)
        assert r.status_code == 400
        assert r.json()["code"] == "data.unfiltered_write"
    assert len((await client.get("/data/items", headers=h)).json()) == 4

    # A single-object write that touches two rows is refused and rolled back.
    r = await client.patch(
        "/data/items?sku=in.(m,h)",
        json={"qty": 9},
        headers={**h, **REPR, "Accept": "application/vnd.pgrst.object+json"},
    )
    assert r.status_code == 406
    assert {row["qty"] for row in (await client.get("/data/items", headers=h)).json()} == {0}

    # PATCH with limit and order touches only the first rows.
    r = await client.patch("/data/items?sku=neq.zzz&order=sku.asc&limit=2", json={"qty": 7}, headers={**h, **REPR})
    assert sorted(row["sku"] for row in r.json()) == ["h", "m"]


async def test_upserts_and_put(client: Any, admin: dict[str, Any], db: Any) -> None:
    await define(client, admin, ITEMS)
    user = await register(client)
    h = {**bearer(user), **REPR}
    await client.post("/data/items", json=[{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], headers=h)

    merge = {**h, "Prefer": "return=representation, resolution=merge-duplicates"}
    r = await client.post("/data/items?on_conflict=sku", json=[{"sku": "a", "qty": 10}, {"sku": "c"}], headers=merge)
    assert r.status_code == 201, r.text
    assert [(row["sku"], row["qty"]) for row in r.json()] == [("a", 10), ("c", 0)]
    assert "resolution=merge-duplicates" in r.headers["preference-applied"]

    ignore = {**h, "Prefer": "return=representation, resolution=ignore-duplicates"}
    r = await client.post("/data/items?on_conflict=sku", json=[{"sku": "b", "qty": 99}, {"sku": "d"}], headers=ignore)
    assert [row["sku"] for row in r.json()] == ["d"]
    rows = {row["sku"]: row["qty"] for row in (await client.get("/data/items", headers=h)).json()}
    assert rows == {"a": 10, "b": 2, "c": 0, "d": 0}
    kinds = [e["type"].rsplit(".", 1)[1] for e in await _events(db)]
    assert kinds == ["created", "created", "updated", "created", "created"]

    r = await client.post("/data/items?on_conflict=label", json={"sku": "x"}, headers=merge)
    assert r.status_code == 400
    assert r.json()["code"] == "data.no_unique_constraint"
    r = await client.post("/data/items", json={"sku": "x"}, headers=merge)
    assert r.json()["code"] == "data.on_conflict_required"

    # PUT replaces the whole row (absent fields back to their default); it never creates one.
    a_id = next(row["id"] for row in (await client.get("/data/items?sku=eq.a", headers=h)).json())
    r = await client.put(f"/data/items?id=eq.{a_id}", json={"sku": "a", "label": "new"}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()[0]["label"], r.json()[0]["qty"]) == ("new", 0)
    new_id = "01900000-0000-7000-8000-000000000001"
    r = await client.put(f"/data/items/{new_id}", json={"sku": "p"}, headers=h)
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "data.record_not_found"
    assert (await client.get("/data/items?sku=eq.p", headers=h)).json() == []
    r = await client.put("/data/items?sku=eq.a", json={"sku": "a"}, headers=h)
    assert r.status_code == 400
    assert r.json()["code"] == "data.put_needs_id"


async def test_record_routes(client: Any, admin: dict[str, Any]) -> None:
    await define(client, admin, ITEMS)
    user = await register(client)
    h = bearer(user)
    row = (await client.post("/data/items", json={"sku": "a"}, headers={**h, **REPR})).json()[0]
    r = await client.get(f"/data/items/{row['id']}?select=sku", headers=h)
    assert r.json() == {"sku": "a"}
    r = await client.patch(f"/data/items/{row['id']}", json={"qty": 3}, headers=h)
    assert r.status_code == 200
    assert r.json()["qty"] == 3
    assert (await client.delete(f"/data/items/{row['id']}", headers=h)).status_code == 204
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"qty": 1}} if method == "patch" else {}
        r = await getattr(client, method)(f"/data/items/{row['id']}", headers=h, **kwargs)
        assert r.status_code == 404, (method, r.text)
        assert r.json()["code"] == "data.record_not_found"
    assert (await client.get("/data/items/not-a-uuid", headers=h)).status_code == 404


# --- hooks -----------------------------------------------------------------------------------------
@pytest.fixture
async def hooked(settings: Settings) -> AsyncIterator[tuple[Any, list[str]]]:
    """An app whose hooks record what they saw, fill a field, and refuse a value."""
    calls: list[str] = []
    hooks = Hooks()

    @hooks.on_create("items")
    async def enrich(event: WriteEvent) -> None:
        calls.append(f"before create {event.data.get('sku')}")
        if event.data.get("sku") == "forbidden":
            raise BadRequest("request.invalid", details={"sku": "not this one"})
        event.data.setdefault("label", "from hook")
        await event.next()
        assert event.record is not None
        calls.append(f"after create {event.record['sku']}")

    @hooks.on_update("items")
    async def audit(event: WriteEvent) -> None:
        assert event.old is not None
        await event.next()
        assert event.record is not None
        calls.append(f"update {event.old['qty']}->{event.record['qty']}")

    @hooks.on_delete("items", priority=-1)
    async def keep_b(event: WriteEvent) -> None:
        assert event.old is not None
        if event.old["sku"] == "b":
            return  # not calling next(): the default action (the delete) does not run
        await event.next()

    app = create_app(settings, hooks=hooks, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client, calls


async def test_hooks_wrap_each_row_write(hooked: tuple[Any, list[str]], db: Any) -> None:
    client, calls = hooked
    admin = await make_admin(client, db)
    await define(client, admin, ITEMS)
    user = await register(client)
    h = {**bearer(user), **REPR}
    r = await client.post("/data/items", json=[{"sku": "a"}, {"sku": "b", "label": "mine"}], headers=h)
    assert r.status_code == 201, r.text
    assert [row["label"] for row in r.json()] == ["from hook", "mine"]
    assert calls == ["before create a", "after create a", "before create b", "after create b"]

    # A hook's refusal rolls back the whole request, rows and events.
    calls.clear()
    r = await client.post("/data/items", json=[{"sku": "c"}, {"sku": "forbidden"}], headers=h)
    assert r.status_code == 400
    assert r.json()["details"] == {"sku": "not this one"}
    assert await _count(db) == 2
    assert len(await _events(db, "created")) == 2

    r = await client.patch("/data/items?sku=eq.a", json={"qty": 4}, headers=h)
    assert calls[-1] == "update 0->4"

    r = await client.delete("/data/items?sku=in.(a,b)", headers=h)
    assert [row["sku"] for row in r.json()] == ["a"]
    assert [row["sku"] for row in (await client.get("/data/items", headers=h)).json()] == ["b"]
    assert len(await _events(db, "deleted")) == 1


async def test_a_delete_through_hooks_announces_its_cascades_row_by_row(hooked: tuple[Any, list[str]], db: Any) -> None:
    client, _ = hooked
    admin = await make_admin(client, db)
    await define(client, admin, ITEMS)
    parts = {
        "name": "parts",
        "fields": [{"name": "item", "type": "relation", "collection": "items", "on_delete": "cascade"}],
        "rules": ITEMS["rules"],
    }
    await define(client, admin, parts)
    user = await register(client)
    h = {**bearer(user), **REPR}
    items = (await client.post("/data/items", json=[{"sku": "a"}, {"sku": "b"}], headers=h)).json()
    r = await client.post("/data/parts", json=[{"item": items[0]["id"]}, {"item": items[1]["id"]}], headers=h)
    assert r.status_code == 201, r.text
    part_of = {p["item"]: p["id"] for p in r.json()}

    r = await client.delete("/data/items?sku=in.(a,b)", headers=h)  # the hook keeps b, so b's part stays
    assert r.status_code == 200, r.text
    deleted = [(e["data"]["collection"], e["data"]["old"]["id"]) for e in await _events(db, "deleted")]
    assert deleted == [("items", items[0]["id"]), ("parts", part_of[items[0]["id"]])]
    assert [p["id"] for p in (await client.get("/data/parts", headers=h)).json()] == [part_of[items[1]["id"]]]


async def test_a_write_never_waits_for_a_second_connection(make_settings: Any, database_url: str) -> None:
    """A write holds one pooled connection for its transaction; what else it needs (the catalog, RBAC
    for its representation) must not take a second one — with every connection held by writes doing the
    same, none would get it until the pool timed out (503). One connection in the pool makes that certain."""
    settings = make_settings(database_url=database_url, db_pool_size=1, db_pool_timeout=1.0)
    app = create_app(settings, configure_logs=False)
    async with AsyncTestClient(app=app) as client:
        admin = await make_admin_on(client, settings)
        await define(client, admin, ITEMS)
        wiring_of(app).get(Catalog).refresh_every = 0.0  # every catalog lookup would look for news
        user = await register(client)  # a new user: no RBAC decision cached yet
        h = {**bearer(user), **REPR}
        r = await client.post("/data/items", json={"sku": "one"}, headers=h)
        assert r.status_code == 201, r.text
        [row] = r.json()
        r = await client.patch("/data/items", params={"id": f"eq.{row['id']}"}, json={"qty": 2}, headers=h)
        assert r.status_code == 200, r.text
        r = await client.put(f"/data/items?id=eq.{row['id']}", json={"sku": "one", "qty": 3}, headers=h)
        assert r.status_code == 200, r.text
        r = await client.put("/data/items?id=eq.0191a0b0-0000-7000-8000-000000000001", json={"sku": "two"}, headers=h)
        assert r.status_code == 404, r.text  # PUT never creates
        r = await client.delete("/data/items", params={"sku": "eq.one"}, headers=h)
        assert r.status_code == 200, r.text
        assert [x["sku"] for x in r.json()] == ["one"]


THREADS = {
    "name": "threads",
    "fields": [{"name": "title", "type": "text", "required": True}],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
POSTS = {
    "name": "posts",
    "fields": [
        {"name": "body", "type": "text"},
        {"name": "thread", "type": "relation", "collection": "threads", "on_delete": "cascade"},
        {"name": "reply_to", "type": "relation", "collection": "posts", "on_delete": "cascade"},
        {"name": "quoted", "type": "relation", "collection": "posts", "on_delete": "set_null"},
    ],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
BOOKMARKS = {
    "name": "bookmarks",
    "fields": [
        {"name": "post", "type": "relation", "collection": "posts", "on_delete": "set_null"},
        {"name": "thread", "type": "relation", "collection": "threads", "on_delete": "set_null"},
    ],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}


async def test_rows_the_database_deletes_or_nulls_on_delete_get_their_events(
    client: Any, admin: dict[str, Any], db: Any
) -> None:
    """PocketBase announces what a cascade does; so does apprun, though the foreign key does the work."""
    for definition in (THREADS, POSTS, BOOKMARKS):
        await define(client, admin, definition)
    user = await register(client)
    h = {**bearer(user), **REPR}

    async def create(collection: str, body: dict[str, Any]) -> str:
        r = await client.post(f"/data/{collection}", json=body, headers=h)
        assert r.status_code == 201, r.text
        return str(r.json()[0]["id"])

    doomed = await create("threads", {"title": "doomed"})
    kept = await create("threads", {"title": "kept"})
    first = await create("posts", {"body": "first", "thread": doomed})
    reply = await create("posts", {"body": "reply", "thread": kept, "reply_to": first})  # goes with its parent
    reply2 = await create("posts", {"body": "reply to reply", "reply_to": reply})
    quoting = await create("posts", {"body": "quoting", "thread": kept, "quoted": reply2})  # stays, nulled
    mark = await create("bookmarks", {"post": first, "thread": doomed})  # two fields nulled: one event
    other = await create("bookmarks", {"post": quoting})  # untouched
    before = len(await _events(db))

    r = await client.delete(f"/data/threads?id=eq.{doomed}", headers=h)
    assert r.status_code == 200, r.text
    events = (await _events(db))[before:]
    deleted = {(e["data"]["collection"], e["data"]["old"]["id"]) for e in events if e["type"].endswith("deleted")}
    assert deleted == {("threads", doomed), ("posts", first), ("posts", reply), ("posts", reply2)}
    assert all(e["data"]["record"] is None for e in events if e["type"].endswith("deleted"))
    updated = [e for e in events if e["type"].endswith("updated")]
    assert sorted(e["subject"] for e in updated) == sorted([f"posts/{quoting}", f"bookmarks/{mark}"])
    for e in updated:
        assert e["tenantid"] == user["tenant_id"]
        collection, row_id = e["data"]["collection"], e["data"]["old"]["id"]
        stored = (await client.get(f"/data/{collection}?id=eq.{row_id}", headers=h)).json()[0]
        assert e["data"]["record"] == stored  # the event says what the row now is
    mark_event = next(e for e in updated if e["subject"] == f"bookmarks/{mark}")
    assert mark_event["data"]["old"]["post"] == first and mark_event["data"]["old"]["thread"] == doomed
    assert mark_event["data"]["record"]["post"] is None and mark_event["data"]["record"]["thread"] is None
    assert len(events) == 6
    assert await _count(db, "posts") == 1
    assert other not in {e["data"]["old"]["id"] for e in events}
