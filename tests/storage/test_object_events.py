"""Object events reach a reader of the tenant's events only if that reader may read the bucket (checklist 32)."""

from __future__ import annotations

from typing import Any

import pytest

from apprun.kernel.db import Database
from tests.storage.conftest import switch
from tests.support.accounts import bearer, join, register

pytestmark = pytest.mark.checklist(32)

CREATED = "apprun.object.created"


async def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status_code in (status, 201, 204), reply.text
    return reply.json() if reply.content else None


async def _object_events(client: Any, tokens: dict[str, Any]) -> list[str]:
    reply = await client.get("/api/v1/events?type=apprun.object.created", headers=bearer(tokens))
    listed = await _ok(reply)
    items = listed["items"] if isinstance(listed, dict) else listed
    return [item["data"]["name"] for item in items if item["type"] == CREATED]


async def test_a_reader_without_read_on_the_bucket_does_not_learn_what_it_holds(client: Any, db: Database) -> None:
    owner = await register(client)
    tenant = owner["tenant_id"]
    for role, objects in (("events_only", ["events"]), ("one_bucket", ["events", "bucket:open"])):
        await _ok(await client.post("/api/v1/roles", json={"name": role}, headers=bearer(owner)), 201)
        for obj in objects:
            policy = {"role": role, "object": obj, "action": "read"}
            await _ok(await client.post("/api/v1/policies", json=policy, headers=bearer(owner)), 201)
    readers = {}
    for role in ("events_only", "one_bucket", "member"):
        person = await register(client)
        await join(client, db, owner, person, role)
        readers[role] = await switch(client, person, tenant)
    for bucket in ("open", "secret"):
        await _ok(await client.post("/storage/v1/bucket", json={"id": bucket}, headers=bearer(owner)))
        upload = await client.post(
            f"/storage/v1/object/{bucket}/{bucket}.txt",
            content=b"x",
            headers={**bearer(owner), "Content-Type": "text/plain"},
        )
        await _ok(upload)
    assert sorted(await _object_events(client, owner)) == ["open.txt", "secret.txt"]
    assert sorted(await _object_events(client, readers["member"])) == ["open.txt", "secret.txt"]  # bucket:* by default
    assert await _object_events(client, readers["one_bucket"]) == ["open.txt"]
    assert await _object_events(client, readers["events_only"]) == []
