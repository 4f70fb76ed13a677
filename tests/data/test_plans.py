"""Compiled reads are reused across requests, never across tenants' data."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from apprun.app import wiring_of
from apprun.data.service import DataService
from tests.support.accounts import bearer, register
from tests.support.schema import define

NOTES = {
    "name": "notes",
    "fields": [{"name": "title", "type": "text", "required": True}, {"name": "rank", "type": "integer"}],
    "rules": {"list": "owner", "view": "owner", "create": "authenticated", "update": "owner", "delete": "owner"},
}


async def test_a_cached_plan_binds_each_callers_tenant_and_owner(
    client: Any, app: Litestar, admin: dict[str, Any]
) -> None:
    await define(client, admin, NOTES)
    users = [await register(client) for _ in range(3)]
    for i, user in enumerate(users):
        rows = [{"title": f"u{i}-{n}", "rank": n} for n in range(3)]
        r = await client.post("/data/notes", json=rows, headers=bearer(user))
        assert r.status_code == 201, r.text

    plans = wiring_of(app).get(DataService).reads.plans
    query = "/data/notes?select=title&rank=gte.1&order=rank.desc"
    before = (plans.hits, plans.misses)
    for _ in range(2):
        for i, user in enumerate(users):
            r = await client.get(query, headers=bearer(user))
            assert r.status_code == 200, r.text
            assert r.json() == [{"title": f"u{i}-2"}, {"title": f"u{i}-1"}]
    assert plans.misses - before[1] == 1  # compiled once, for the first caller
    assert plans.hits - before[0] == 5  # then reused by every caller, each bound to its own rows

    # Other values, another page: the same shape, the same plan.
    r = await client.get("/data/notes?select=title&rank=gte.2&order=rank.desc", headers=bearer(users[0]))
    assert r.json() == [{"title": "u0-2"}]
    r = await client.get("/data/notes?select=title&rank=gte.0&order=rank.desc&offset=2", headers=bearer(users[1]))
    assert r.json() == [{"title": "u1-0"}]
    assert plans.misses - before[1] == 2  # offset=2 adds an OFFSET clause: one more shape
    r = await client.get("/data/notes?select=title&rank=gte.0&order=rank.desc&offset=1", headers=bearer(users[2]))
    assert r.json() == [{"title": "u2-1"}, {"title": "u2-0"}]
    assert plans.misses - before[1] == 2

    # A bad value in a cached shape is still refused, with the same error as the first time.
    for _ in range(2):
        r = await client.get("/data/notes?select=title&rank=gte.many&order=rank.desc", headers=bearer(users[0]))
        assert r.status_code == 400
        assert r.json()["code"] == "data.invalid_filter_value"

    # Another operator, another length of an in-list: other shapes.
    r = await client.get("/data/notes?select=title&rank=lt.1&order=rank.desc", headers=bearer(users[0]))
    assert r.json() == [{"title": "u0-0"}]
    r = await client.get("/data/notes?select=title&rank=in.(0,2)&order=rank.desc", headers=bearer(users[0]))
    assert r.json() == [{"title": "u0-2"}, {"title": "u0-0"}]
    r = await client.get("/data/notes?select=title&rank=in.(1)&order=rank.desc", headers=bearer(users[0]))
    assert r.json() == [{"title": "u0-1"}]
    assert plans.misses - before[1] == 5
