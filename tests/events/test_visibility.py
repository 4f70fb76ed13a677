"""Checklist item 32: a record's event reaches only those who could read the record through the data API.

One table (`ROWS`) names, for rows of every ``view`` rule written by
different people, who may see each row. For every reader (owner, member,
viewer, custom role with and without a read policy, API key, service key,
platform admin, and a user of another tenant), the test compares three
answers with it:

- ``GET /data/{collection}/{id}`` (200 or 404), asked after the rows were
  updated and before they are deleted, so that the row each event is about
  is the row the data API answered for;
- the events about the row in ``GET /api/v1/events`` (the history);
- the events about the row on ``GET /api/v1/events/stream``, opened before
  the first write (with the in-process bus, which follows the outbox, and
  with NATS, which follows the bus).

All three must agree with the table, for the ``created``, ``updated`` and
``deleted`` event of each row, on SQLite and PostgreSQL, and no event may
carry a hidden field's value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from apprun.data.schema.model import CollectionDef
from apprun.data.schema.validation import canonical_datetime
from apprun.data.visibility import RecordVisibility
from apprun.events.envelope import CloudEvent, make_event
from apprun.kernel.context import RequestContext
from apprun.kernel.db import Database
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.testing.engines import NatsServer
from tests.support.accounts import ADMIN_PASSWORD, bearer, join, login, register, unique_email
from tests.support.live import LiveServer
from tests.support.sse import SseReader, event_stream
from tests.support.test_app import prepare

pytestmark = [pytest.mark.slow, pytest.mark.checklist(32)]

DONE = "app.test.done"
#: Every hidden field's value carries this marker: no event may.
HIDDEN = "HIDDEN-VALUE"

#: People and keys of tenant A, and carol of tenant B.
READERS = ("alice", "bob", "vera", "rita", "nora", "key", "service", "admin", "carol")
EVERYONE_IN_A = frozenset(READERS) - {"carol"}
BYPASS = frozenset({"service", "admin"})
#: Who holds ``read`` on ``collection:*`` in tenant A: the owner, a member, a viewer, the custom
#: role with the policy (rita) and the member API key — not the custom role without it (nora).
RBAC_READERS = frozenset({"alice", "bob", "vera", "rita", "key"}) | BYPASS


def _collection(name: str, view: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "secret", "type": "text", "hidden": True},
            *extra.pop("fields", []),
        ],
        "rules": {"list": view, "view": view, "create": "authenticated", "update": "authenticated",
                  "delete": "authenticated"},
        **extra,
    }  # fmt: skip


COLLECTIONS = [
    _collection("v_public", "public"),
    _collection("v_signed_in", "authenticated"),
    _collection("v_owner", "owner"),
    _collection("v_assigned", "owner", owner_field="assignee", fields=[{"name": "assignee", "type": "uuid"}]),
    _collection("v_rbac", "rbac"),
    _collection("v_nobody", "nobody"),
]


@dataclass(frozen=True)
class Row:
    """A row of ``collection`` written by ``writer`` (``planted``: by SQL, owned by ``assignee``)."""

    collection: str
    writer: str
    sees: frozenset[str]
    assignee: str | None = None

    @property
    def label(self) -> str:
        return f"{self.collection}/{self.writer}" + (f"->{self.assignee}" if self.assignee else "")


def _rows() -> Iterator[Row]:
    for writer in ("alice", "bob", "service"):
        yield Row("v_public", writer, EVERYONE_IN_A)
        yield Row("v_signed_in", writer, EVERYONE_IN_A)
        # The owner's own row, and the bypass callers; an API key is nobody's user.
        yield Row("v_owner", writer, (frozenset({writer}) - {"service"}) | BYPASS)
        yield Row("v_assigned", writer, (frozenset({writer}) - {"service"}) | BYPASS)
        yield Row("v_rbac", writer, RBAC_READERS)
        yield Row("v_nobody", writer, BYPASS)
    # Created by alice, owned through the owner field by bob: the owner field decides, not the creator.
    yield Row("v_assigned", "planted", frozenset({"bob"}) | BYPASS, assignee="bob")
    # Tenant B: carol's own rows, which no one of tenant A may see.
    for collection, sees in (
        ("v_public", {"carol"}),
        ("v_signed_in", {"carol"}),
        ("v_owner", {"carol"}),
        ("v_assigned", {"carol"}),
        ("v_rbac", {"carol"}),
        ("v_nobody", set()),
    ):
        yield Row(collection, "carol", frozenset(sees))


ROWS = list(_rows())


@dataclass
class World:
    http: httpx.AsyncClient
    db: Database
    #: Headers each reader's requests carry.
    headers: dict[str, dict[str, str]]
    #: User ids of the people.
    users: dict[str, str]
    tenant_a: str
    #: Row label → record id.
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, http: httpx.AsyncClient, db: Database, tokens: dict[str, dict[str, Any]]) -> World:
        headers = {who: t if "apikey" in t else bearer(t) for who, t in tokens.items()}
        users = {who: t["user"]["id"] for who, t in tokens.items() if "user" in t}
        return cls(http, db, headers, users, tokens["alice"]["tenant_id"])


async def _ok(reply: httpx.Response, *status: int) -> Any:
    assert reply.status_code in (status or (200, 201)), reply.text
    return reply.json() if reply.content else None


async def _join(
    http: httpx.AsyncClient, db: Database, owner: dict[str, Any], tokens: dict[str, Any], role: str
) -> dict[str, Any]:
    tenant = owner["tenant_id"]
    await join(http, db, owner, tokens, role)
    switched: dict[str, Any] = await _ok(
        await http.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(tokens))
    )
    return switched


async def _platform_admin(http: httpx.AsyncClient, db: Database) -> dict[str, Any]:
    email = unique_email("admin")
    tokens = await register(http, email=email, password=ADMIN_PASSWORD)
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET is_platform_admin = $1 WHERE id = $2", True, tokens["user"]["id"])
    return await login(http, email, ADMIN_PASSWORD)


async def _people(http: httpx.AsyncClient, db: Database) -> dict[str, dict[str, Any]]:
    """Tenant A: alice (owner) and her members, keys and custom roles; the platform admin; carol in B."""
    admin = await _platform_admin(http, db)
    for definition in COLLECTIONS:
        await _ok(await http.post("/api/v1/collections", json=definition, headers=bearer(admin)))
    alice = await register(http)
    for role in ("reader", "blind"):
        await _ok(await http.post("/api/v1/roles", json={"name": role}, headers=bearer(alice)))
        await _ok(
            await http.post(
                "/api/v1/policies", json={"role": role, "object": "events", "action": "read"}, headers=bearer(alice)
            )
        )
    policy = {"role": "reader", "object": "collection:v_rbac", "action": "read"}
    await _ok(await http.post("/api/v1/policies", json=policy, headers=bearer(alice)))
    tokens = {"alice": alice, "carol": await register(http)}
    for who, role in (("bob", "member"), ("vera", "viewer"), ("rita", "reader"), ("nora", "blind")):
        tokens[who] = await _join(http, db, alice, await register(http), role)
    # The platform admin joins with a role that grants no data: the bypass is theirs, not the role's.
    tokens["admin"] = await _join(http, db, alice, admin, "blind")
    for who, body in (("key", {"role": "member"}), ("service", {"kind": "service"})):
        created = await _ok(await http.post("/api/v1/api-keys", json={"name": who, **body}, headers=bearer(alice)))
        tokens[who] = {"apikey": created["key"]}
    return tokens


async def _plant(world: World, row: Row) -> str:
    """A row of tenant A written by SQL (so without an event): created by alice, owned by ``row.assignee``."""
    now: Any = utcnow() if world.db.dialect == "postgres" else canonical_datetime(utcnow())
    record_id = new_id()
    async with world.db.transaction() as conn:
        await conn.execute(
            f'INSERT INTO "{row.collection}" (id, tenant_id, created_at, updated_at, created_by, title, secret, '  # noqa: S608
            "assignee) VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
            record_id,
            world.tenant_a,
            now,
            world.users["alice"],
            row.label,
            HIDDEN,
            world.users[row.assignee or ""],
        )
    return record_id


async def _write_rows(world: World) -> None:
    for row in ROWS:
        if row.assignee is not None:
            world.ids[row.label] = await _plant(world, row)
            continue
        reply = await world.http.post(
            f"/data/{row.collection}",
            json={"title": row.label, "secret": HIDDEN},
            # Not the row itself: a writer may not be allowed to view it (v_nobody).
            headers={**world.headers[row.writer], "Prefer": "return=headers-only"},
        )
        assert reply.status_code == 201, reply.text
        world.ids[row.label] = reply.headers["Location"].rsplit("id=eq.", 1)[1]


def _editor(row: Row) -> str:
    """Who updates and deletes the row: the service key of its tenant (carol in tenant B)."""
    return "carol" if row.writer == "carol" else "service"


async def _change_rows(world: World, method: str) -> None:
    for row in ROWS:
        # By filter, not by id: PATCH /data/c/{id} replies with the row, which carol may not view (v_nobody).
        path = f"/data/{row.collection}?id=eq.{world.ids[row.label]}"
        headers = world.headers[_editor(row)]
        if method == "PATCH":
            reply = await world.http.patch(path, json={"title": row.label + " (edited)"}, headers=headers)
        else:
            reply = await world.http.delete(path, headers=headers)
        assert reply.status_code in (200, 204), reply.text


async def _data_api(world: World) -> dict[tuple[str, str], bool]:
    """(reader, row) → whether ``GET /data/{collection}/{id}`` shows the row."""
    out: dict[tuple[str, str], bool] = {}
    for row in ROWS:
        for reader in READERS:
            reply = await world.http.get(
                f"/data/{row.collection}/{world.ids[row.label]}", headers=world.headers[reader]
            )
            assert reply.status_code in (200, 403, 404), (reader, row.label, reply.text)
            out[reader, row.label] = reply.status_code == 200
    return out


def _by_row(world: World, events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Row label → the kinds of record event (created, updated, deleted) among ``events``."""
    labels = {record_id: label for label, record_id in world.ids.items()}
    out: dict[str, set[str]] = {}
    for event in events:
        if event["type"].startswith("apprun.record."):
            record_id = event["subject"].split("/", 1)[1]
            out.setdefault(labels[record_id], set()).add(event["type"].removeprefix("apprun.record."))
    return out


async def _history(world: World, reader: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = await _ok(
        await world.http.get("/api/v1/events?limit=500", headers=world.headers[reader])
    )
    return events


def _compare(
    world: World, answers: dict[str, dict[str, set[str]]], data: dict[tuple[str, str], bool], where: str
) -> list[str]:
    problems = []
    for row in ROWS:
        every = {"created", "updated", "deleted"} if row.assignee is None else {"updated", "deleted"}
        for reader in READERS:
            expected = reader in row.sees
            if data[reader, row.label] != expected:
                problems.append(f"GET /data: {reader} {'misses' if expected else 'sees'} {row.label}")
            got = answers[reader].get(row.label, set())
            if got != (every if expected else set()):
                problems.append(f"{where}: {reader} got {sorted(got)} of {row.label}, expected {expected}")
    return problems


async def _collect(reader: SseReader) -> list[dict[str, Any]]:
    return [m.json() for m in await reader.until(DONE, timeout=60)]


@pytest.mark.parametrize("bus", ["memory", "nats"])
async def test_events_reach_exactly_those_the_data_api_shows_the_row(
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
        with LiveServer(tmp_path / "server", env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, AsyncExitStack() as streams:
                world = World.of(http, db, await _people(http, db))
                readers = {
                    who: await streams.enter_async_context(event_stream(http, world.headers[who])) for who in READERS
                }
                tails = {who: asyncio.create_task(_collect(r)) for who, r in readers.items()}
                try:
                    await _write_rows(world)
                    await _change_rows(world, "PATCH")
                    data = await _data_api(world)
                    await _change_rows(world, "DELETE")
                    for who in ("alice", "carol"):
                        done = await http.post("/api/v1/events", json={"type": DONE}, headers=world.headers[who])
                        assert done.status_code == 202, done.text
                    streamed = {who: await task for who, task in tails.items()}
                finally:
                    for task in tails.values():
                        task.cancel()
                histories = {who: await _history(world, who) for who in READERS}
        problems = _compare(world, {w: _by_row(world, e) for w, e in streamed.items()}, data, "stream")
        problems += _compare(world, {w: _by_row(world, e) for w, e in histories.items()}, data, "history")
        assert not problems, "\n".join(problems)
        assert HIDDEN not in repr(streamed) + repr(histories)
        for event in [e for events in (*streamed.values(), *histories.values()) for e in events]:
            if event["type"].startswith("apprun.record."):
                for row in (event["data"]["record"], event["data"]["old"]):
                    assert row is None or "secret" not in row, event
    finally:
        await db.close()
        if nats_server is not None:
            nats_server.stop()


# --- which row decides (in memory: no change of owner is possible through the API) -------------------------------
class _Catalog:
    def __init__(self, *collections: CollectionDef) -> None:
        self.collections = {c.name: c for c in collections}

    async def get(self, name: str) -> CollectionDef | None:
        return self.collections.get(name)


def _record_event(kind: str, *, record: dict[str, Any] | None, old: dict[str, Any] | None) -> CloudEvent:
    row = record or old or {}
    data = {"collection": "tasks", "record": record, "old": old}
    return make_event(f"apprun.record.{kind}", tenant_id=row.get("tenant_id"), subject=f"tasks/{row['id']}", data=data)


async def test_which_row_decides_for_each_kind_of_record_event() -> None:
    tasks = CollectionDef.model_validate(
        {"name": "tasks", "owner_field": "assignee", "fields": [{"name": "assignee", "type": "uuid"}],
         "rules": {"list": "owner", "view": "owner"}}
    )  # fmt: skip
    visibility = RecordVisibility(_Catalog(tasks), rbac=None)  # type: ignore[arg-type]  # owner rules never ask RBAC
    tenant, alice, bob = new_id(), new_id(), new_id()
    bob_ctx = RequestContext(request_id="r", user_id=bob, tenant_id=tenant, auth_method="jwt")
    service_ctx = RequestContext(request_id="r", tenant_id=tenant, auth_method="service")
    alices = {"id": new_id(), "tenant_id": tenant, "assignee": alice, "title": "before"}
    bobs = {**alices, "assignee": bob, "title": "after"}
    # Handed from alice to bob: bob gets the update, without the row as it was while it was alice's.
    handed = await visibility.visible(bob_ctx, _record_event("updated", record=bobs, old=alices))
    assert handed is not None and handed.data["record"] == bobs and handed.data["old"] is None
    # Taken from bob: the row after decides, so bob no longer hears of it.
    assert await visibility.visible(bob_ctx, _record_event("updated", record=alices, old=bobs)) is None
    # A delete: the row before decides.
    assert await visibility.visible(bob_ctx, _record_event("deleted", record=None, old=bobs)) is not None
    assert await visibility.visible(bob_ctx, _record_event("deleted", record=None, old=alices)) is None
    # Another tenant's row, a collection that is gone, an event without a row: only a bypass caller, in its tenant.
    elsewhere = {**bobs, "tenant_id": new_id()}
    assert await visibility.visible(bob_ctx, _record_event("created", record=elsewhere, old=None)) is None
    assert await visibility.visible(service_ctx, _record_event("created", record=elsewhere, old=None)) is None
    gone = make_event("apprun.record.created", tenant_id=tenant, data={"collection": "dropped", "record": bobs})
    assert await visibility.visible(bob_ctx, gone) is None
    assert await visibility.visible(service_ctx, gone) is gone
    shapeless = make_event("apprun.record.created", tenant_id=tenant, data={"collection": "tasks"})
    assert await visibility.visible(bob_ctx, shapeless) is None
    # Not a record event: the events module's own rule applies, unchanged.
    app_event = make_event("app.order.created", tenant_id=tenant, data={"id": 1})
    assert await visibility.visible(bob_ctx, app_event) is app_event
