"""Per-tenant byte quotas: cut off while streaming, exact at commit even for concurrent uploads; other tenants free."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from apprun.app import create_app
from apprun.kernel.db import Database
from tests.storage.conftest import stored_keys
from tests.support.accounts import bearer, register
from tests.support.same_loop import same_loop_client

QUOTA = 10_000
BINARY = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"storage_tenant_quota_bytes": QUOTA})


async def _owner_with_bucket(client: Any) -> dict[str, str]:
    owner = await register(client)
    reply = await client.post("/storage/v1/bucket", json={"id": "files"}, headers=bearer(owner))
    assert reply.status_code == 200, reply.text
    return bearer(owner)


async def _upload(client: Any, auth: dict[str, str], name: str, size: int, **headers: str) -> Any:
    return await client.post(
        f"/storage/v1/object/files/{name}", content=b"q" * size, headers={**auth, **BINARY, **headers}
    )


async def _objects(db: Database) -> list[tuple[str, int]]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT name, size FROM apprun_storage_objects ORDER BY name")
    return [(r["name"], int(r["size"])) for r in rows]


async def test_a_tenant_stays_within_its_quota(client: Any, db: Database, settings: Any) -> None:
    auth = await _owner_with_bucket(client)
    assert (await _upload(client, auth, "a.bin", 6000)).status_code == 200
    over = await _upload(client, auth, "b.bin", 5000)
    assert (over.status_code, over.json()["code"]) == (413, "storage.quota_exceeded")
    assert "10000" in over.json()["message"]
    assert (await _upload(client, auth, "c.bin", 4000)).status_code == 200  # exactly full
    # Full, but a replacement may use what it frees.
    assert (await _upload(client, auth, "a.bin", 6000, **{"x-upsert": "true"})).status_code == 200
    assert (await _upload(client, auth, "a.bin", 6001, **{"x-upsert": "true"})).status_code == 413
    copy = await client.post("/storage/v1/object/copy", json={"bucketId": "files", "sourceKey": "c.bin",
                             "destinationKey": "d.bin"}, headers=auth)  # fmt: skip
    assert (copy.status_code, copy.json()["code"]) == (413, "storage.quota_exceeded")
    removed = await client.request("DELETE", "/storage/v1/object/files", json={"prefixes": ["c.bin"]}, headers=auth)
    assert removed.status_code == 200, removed.text
    assert (await _upload(client, auth, "e.bin", 4000)).status_code == 200  # the room came back
    # Another tenant has a quota of its own.
    assert (await _upload(client, await _owner_with_bucket(client), "x.bin", 9000)).status_code == 200
    assert await _objects(db) == [("a.bin", 6000), ("e.bin", 4000), ("x.bin", 9000)]
    assert [k for k in stored_keys(settings) if k.startswith(".staging/")] == []


async def test_concurrent_uploads_cannot_pass_the_quota_together(settings: Any, db: Database) -> None:
    # Three uploads of 6,000 bytes, each past its room check (made before its first byte is staged) before any
    # sends the rest: each fits the room it saw; together they do not, and the commit must say so.
    started = [asyncio.Event() for _ in range(3)]
    go = asyncio.Event()

    def body(i: int) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"q" * 3000
            yield b""  # asked for only once the first chunk was taken in
            started[i].set()
            await go.wait()
            yield b"q" * 3000

        return chunks()

    async with same_loop_client(create_app(settings, configure_logs=False)) as client:
        auth = await _owner_with_bucket(client)
        tasks = [
            asyncio.create_task(
                client.post(f"/storage/v1/object/files/{i}.bin", content=body(i), headers={**auth, **BINARY})
            )
            for i in range(3)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
        go.set()
        replies = await asyncio.gather(*tasks)
    assert sorted(r.status_code for r in replies) == [200, 413, 413], [r.text for r in replies]
    assert sum(size for _, size in await _objects(db)) == 6000
