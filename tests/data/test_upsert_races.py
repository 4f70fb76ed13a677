"""Checklist 35: concurrent writes of one unique value, against a real server with two workers.

The in-process client sends one request at a time, so these races need
`LiveServer`: 50 requests at once, spread over two processes and their
connection pools. On PostgreSQL an upsert that looked its key up, found
nothing and then inserted lost to whichever request committed first
(``409 data.unique_violation``); SQLite's writers take turns, so it never
raced there, but the same table runs on both.

Every request writes a value of its own (``n``), so the outcome proves more
than the statuses: one row per key, holding the last write; one ``created``
event and 49 ``updated`` events whose ``old`` is each time the write before
(no update lost, none applied to a stale row).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.data.hooks import Hooks, WriteEvent
from apprun.kernel.db import Database, create_database
from apprun.kernel.ids import new_id
from apprun.modules import Settings
from tests.support.accounts import bearer, make_admin_on, register
from tests.support.live import LiveServer
from tests.support.schema import define

pytestmark = [pytest.mark.slow, pytest.mark.checklist(35)]

#: Requests per key, all sent at once.
N = 50
#: Keys raced one after the other: a race is lost only while the key is new, so each round starts one.
ROUNDS = 10

RIVAL_ID = "01900000-0000-7000-8000-00000000beef"

ITEMS = {
    "name": "items",
    "fields": [
        {"name": "slug", "type": "text", "required": True, "unique": True},
        {"name": "n", "type": "integer"},
    ],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}


@dataclass
class Live:
    http: httpx.AsyncClient
    db: Database
    headers: dict[str, str]

    async def burst(self, slug: str, prefer: str | None, path: str = "/data/items") -> list[httpx.Response]:
        """N requests at once writing ``slug``, request ``i`` with ``n = i``."""
        headers = {**self.headers, **({"Prefer": prefer} if prefer else {})}
        return list(
            await asyncio.gather(
                *(self.http.post(path, json={"slug": slug, "n": i}, headers=headers) for i in range(N))
            )
        )

    async def rows(self, slug: str) -> list[dict[str, Any]]:
        return await rows_of(self.db, slug)

    async def events(self, slug: str) -> list[dict[str, Any]]:
        return await events_of(self.db, slug)


async def rows_of(db: Database, slug: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [dict(r) for r in await conn.fetch('SELECT id, n FROM "items" WHERE slug = $1', slug)]


async def events_of(db: Database, slug: str) -> list[dict[str, Any]]:
    """The record events of the row(s) with ``slug``, in the order written."""
    async with db.read() as conn:
        rows = await conn.fetch("SELECT payload FROM apprun_event_outbox WHERE type LIKE 'apprun.record.%' ORDER BY id")
    out = [json.loads(r["payload"]) for r in rows]
    return [e for e in out if (e["data"]["record"] or e["data"]["old"])["slug"] == slug]


@pytest.fixture
async def live(tmp_path: Path, make_settings: Any, database_url: str) -> AsyncIterator[Live]:
    settings: Settings = make_settings(database_url=database_url)
    # Two workers, so the requests run side by side in two processes, each with its own pool.
    with LiveServer(tmp_path, {"DATABASE_URL": database_url}, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            admin = await make_admin_on(http, settings)
            await define(http, admin, ITEMS)
            user = await register(http)
            db = create_database(settings)
            await db.open()
            try:
                yield Live(http, db, bearer(user))
            finally:
                await db.close()


def _shown(replies: list[httpx.Response]) -> list[str]:
    return sorted({f"{r.status_code} {r.text[:200]}" for r in replies})


async def test_concurrent_upserts_of_one_key_all_succeed_and_the_last_write_wins(live: Live) -> None:
    for k in range(ROUNDS):
        slug = f"merge-{k}"
        replies = await live.burst(
            slug, "resolution=merge-duplicates,return=representation", "/data/items?on_conflict=slug"
        )
        assert [r.status_code for r in replies] == [201] * N, _shown(replies)
        # Each reply shows the request's own write.
        assert [r.json()[0]["n"] for r in replies] == list(range(N))
        [row] = await live.rows(slug)
        events = await live.events(slug)
        created = [e["data"]["record"]["n"] for e in events if e["type"] == "apprun.record.created"]
        updated = [e["data"] for e in events if e["type"] == "apprun.record.updated"]
        assert len(created) == 1 and len(updated) == N - 1, [e["type"] for e in events]
        assert all(e["data"]["record"]["id"] == row["id"] for e in events)
        # Every write is some event's record; every write but the last is the ``old`` of exactly one update:
        # the updates form one chain, each applied to the row as the previous one left it.
        assert sorted(created + [u["record"]["n"] for u in updated]) == list(range(N))
        assert sorted(u["old"]["n"] for u in updated) == sorted(set(range(N)) - {row["n"]})


async def test_concurrent_upserts_ignoring_duplicates_keep_the_first_row(live: Live) -> None:
    for k in range(ROUNDS):
        slug = f"ignore-{k}"
        replies = await live.burst(
            slug, "resolution=ignore-duplicates,return=representation", "/data/items?on_conflict=slug"
        )
        assert [r.status_code for r in replies] == [201] * N, _shown(replies)
        written = [r.json() for r in replies if r.json()]
        assert len(written) == 1, written  # the one that inserted; the others wrote nothing
        [row] = await live.rows(slug)
        assert row["n"] == written[0][0]["n"]
        assert [e["type"] for e in await live.events(slug)] == ["apprun.record.created"]


async def test_concurrent_inserts_of_one_unique_value_make_one_row_and_clean_409s(live: Live) -> None:
    for k in range(ROUNDS // 2):
        slug = f"insert-{k}"
        replies = await live.burst(slug, None)
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [201] + [409] * (N - 1), _shown(replies)
        refused = [r.json() for r in replies if r.status_code == 409]
        assert {body["code"] for body in refused} == {"data.unique_violation"}
        assert all(set(body) >= {"code", "message", "request_id"} for body in refused)
        assert len(await live.rows(slug)) == 1
        assert [e["type"] for e in await live.events(slug)] == ["apprun.record.created"]


# --- the race made certain: the rival commits while the upsert's create hook runs ----------------------
async def test_an_upsert_that_loses_the_race_updates_through_the_update_hooks(
    make_settings: Any, pg_databases: Any
) -> None:
    """The upsert found no row, ran its create hook, and meanwhile another client committed the key.

    PostgreSQL only: there a second transaction can commit between the
    lookup and the INSERT. SQLite's writers take turns (the rival's insert
    would wait for this transaction), so the race cannot happen there; the
    live tests above run on both.
    """
    dsn = await pg_databases.create()
    settings = make_settings(database_url=dsn)
    calls: list[str] = []
    hooks = Hooks()

    @hooks.on_create("items")
    async def rival_first(event: WriteEvent) -> None:
        calls.append("create")
        tenant, user = event.ctx.tenant_id, event.ctx.user_id
        # A write of the hook's own, in the request's transaction: it must go with the create that did not happen.
        await event.conn.execute(
            'INSERT INTO "items" (id, tenant_id, created_at, updated_at, created_by, slug, n) '
            "VALUES ($1, $2, now(), now(), $3, 'shadow', 0)",
            new_id(),
            tenant,
            user,
        )
        rival = await asyncpg.connect(dsn)
        try:
            await rival.execute(
                'INSERT INTO "items" (id, tenant_id, created_at, updated_at, created_by, slug, n) '
                "VALUES ($1, $2, now(), now(), $3, 'raced', -1)",
                RIVAL_ID,
                tenant,
                user,
            )
        finally:
            await rival.close()
        await event.next()
        calls.append("created")  # never: next() raised, the key was taken

    @hooks.on_update("items")
    async def audit(event: WriteEvent) -> None:
        assert event.old is not None
        await event.next()
        assert event.record is not None
        calls.append(f"update {event.old['n']}->{event.record['n']}")

    app = create_app(settings, hooks=hooks, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        admin = await make_admin_on(client, settings)
        await define(client, admin, ITEMS)
        user = await register(client)
        r = await client.post(
            "/data/items?on_conflict=slug",
            json={"slug": "raced", "n": 5},
            headers={**bearer(user), "Prefer": "resolution=merge-duplicates,return=representation"},
        )
    assert r.status_code == 201, r.text
    assert [(row["id"], row["n"]) for row in r.json()] == [(RIVAL_ID, 5)]
    assert calls == ["create", "update -1->5"]
    db = create_database(settings)
    await db.open()
    try:
        assert await rows_of(db, "raced") == [{"id": RIVAL_ID, "n": 5}]
        assert await rows_of(db, "shadow") == []
        events = await events_of(db, "raced")
        assert [(e["type"], e["data"]["old"]["n"], e["data"]["record"]["n"]) for e in events] == [
            ("apprun.record.updated", -1, 5)
        ]
    finally:
        await db.close()
