"""A write reads its rows back as the API shows them, with one statement compiled per collection definition.

The statement is cached (rows.py, `RowStore._read_back`); a changed
definition must compile a new one, or the reply and the event would miss
the new field.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.accounts import bearer, register
from tests.support.schema import define

NOTES: dict[str, Any] = {
    "name": "notes",
    "fields": [{"name": "title", "type": "text", "required": True}],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
RETURN = {"Prefer": "return=representation"}


async def _last_event_record(db: Any) -> dict[str, Any]:
    import json

    async with db.read() as conn:
        row = await conn.fetchrow("SELECT payload FROM apprun_event_outbox ORDER BY id DESC LIMIT 1")
    record: dict[str, Any] = json.loads(row[0])["data"]["record"]
    return record


async def test_the_read_back_follows_the_collection_definition(client: Any, admin: dict[str, Any], db: Any) -> None:
    await define(client, admin, NOTES)
    user = await register(client)
    first = await client.post("/data/notes", json={"title": "a"}, headers={**bearer(user), **RETURN})
    assert first.status_code == 201, first.text
    assert set(first.json()[0]) >= {"id", "title"}
    assert "pinned" not in first.json()[0]

    grown = {**NOTES, "fields": [*NOTES["fields"], {"name": "pinned", "type": "boolean", "default": False}]}
    await define(client, admin, grown)
    second = await client.post("/data/notes", json={"title": "b", "pinned": True}, headers={**bearer(user), **RETURN})
    assert second.status_code == 201, second.text
    assert second.json()[0]["pinned"] is True
    assert (await _last_event_record(db))["pinned"] is True

    # Many rows at once, in the order sent, each in its own tenant's read-back only.
    other = await register(client)
    bulk = [{"title": f"n{i}"} for i in range(5)]
    many = await client.post("/data/notes", json=bulk, headers={**bearer(other), **RETURN})
    assert many.status_code == 201, many.text
    assert [r["title"] for r in many.json()] == [f"n{i}" for i in range(5)]
    mine = await client.get("/data/notes", headers=bearer(user))
    assert sorted(r["title"] for r in mine.json()) == ["a", "b"]


TYPED: dict[str, Any] = {
    "name": "typed",
    "fields": [
        {"name": "title", "type": "text", "required": True, "unique": True},
        {"name": "count", "type": "integer"},
        {"name": "ratio", "type": "number"},
        {"name": "flag", "type": "boolean"},
        {"name": "flag_default", "type": "boolean", "default": True},
        {"name": "at", "type": "datetime"},
        {"name": "day", "type": "date"},
        {"name": "meta", "type": "json"},
        {"name": "ref", "type": "uuid"},
        {"name": "mail", "type": "email"},
        {"name": "site", "type": "url"},
        {"name": "status", "type": "enum", "values": ["draft", "published"], "default": "draft"},
        {"name": "secret", "type": "text", "hidden": True},
    ],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
TYPED_ROWS: list[dict[str, Any]] = [
    {
        "title": 'it\'s "quoted" \\ é ☃ 😀', "count": 9007199254740993, "ratio": 2.0833333333333335,
        "flag": False, "at": "2026-12-02T11:30:15.123456Z", "day": "2026-02-28",
        "meta": {"a": [1, 2.5, None, True, "x"], "é": {"n": 1e300}}, "ref": "01a2366c-bf4f-7c62-91c0-28a4b9b53f29",
        "mail": "a@example.com", "site": "https://example.com/a?b=c", "status": "published", "secret": "s",
    },
    {"title": "nulls", "count": None, "ratio": 2.0, "flag": True, "meta": [], "at": "2026-12-02T11:30:15Z"},
    {"title": "bare"},
]  # fmt: skip


@pytest.mark.parametrize("how", ["one", "bulk", "upsert"])
async def test_a_create_returns_its_rows_as_a_later_read_shows_them(
    client: Any, admin: dict[str, Any], db: Any, how: str
) -> None:
    """The rows come from the INSERT's RETURNING: every type renders as a later GET (and the event) has it."""
    await define(client, admin, TYPED)
    user = await register(client)
    headers = {**bearer(user), **RETURN}
    if how == "upsert":
        headers["Prefer"] += ", resolution=merge-duplicates"
    created: list[dict[str, Any]] = []
    bodies: list[str] = []
    if how == "bulk":
        reply = await client.post("/data/typed", json=TYPED_ROWS, headers=headers)
        assert reply.status_code == 201, reply.text
        bodies.append(reply.text)
        created += reply.json()
    else:
        path = "/data/typed?on_conflict=title" if how == "upsert" else "/data/typed"
        for row in TYPED_ROWS:
            reply = await client.post(path, json=row, headers=headers)
            assert reply.status_code == 201, reply.text
            bodies.append(reply.text)
            created += reply.json()
    assert [r["title"] for r in created] == [r["title"] for r in TYPED_ROWS]
    assert all("secret" not in r for r in created)
    read = []
    for record in created:
        got = await client.get(f"/data/typed/{record['id']}", headers=bearer(user))
        assert got.status_code == 200, got.text
        read.append(got.json())

    # Same keys in the same order, same values (floats and big integers exactly): the reply is the
    # compact JSON of what a read shows.
    assert [list(r.items()) for r in created] == [list(r.items()) for r in read]
    expected = [json.dumps(read, separators=(",", ":"), ensure_ascii=False)] if how == "bulk" else [
        json.dumps([r], separators=(",", ":"), ensure_ascii=False) for r in read
    ]  # fmt: skip
    assert bodies == expected
    assert created[0]["count"] == 9007199254740993 and created[0]["ratio"] == 2.0833333333333335
    assert created[1]["flag_default"] is True and created[2]["status"] == "draft" and created[2]["meta"] is None
    async with db.read() as conn:
        rows = await conn.fetch("SELECT payload FROM apprun_event_outbox WHERE type = 'apprun.record.created'")
    events = {e["data"]["record"]["id"]: e["data"]["record"] for e in (json.loads(r[0]) for r in rows)}
    assert [list(events[r["id"]].items()) for r in read] == [list(r.items()) for r in read]
