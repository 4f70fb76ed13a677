"""A write reads its rows back as the API shows them, with one statement compiled per collection definition.

The statement is cached (rows.py, `RowStore._read_back`); a changed
definition must compile a new one, or the reply and the event would miss
the new field.
"""

from __future__ import annotations

from typing import Any

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
