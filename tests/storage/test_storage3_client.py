"""Supabase's Python client for Storage (``storage3`` on PyPI) against apprun's ``/storage/v1``.

The client is used as an application uses it, ``AsyncStorageClient`` pointed
at ``<server>/storage/v1/`` with the user's bearer token, so what is tested
is the HTTP it really sends (multipart uploads with ``cacheControl`` and
``metadata`` fields, ``x-upsert``, JSON bodies for list, move, copy and
remove) and how it reads the replies (``Key``, ``BaseBucket``, the error
body's ``message``/``error``/``statusCode``). It runs in-process: the client
is handed the test's ``AsyncTestClient`` as its HTTP session, as
tests/data/test_postgrest_client.py does for PostgREST's client.
"""

from __future__ import annotations

from typing import Any

import pytest
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError

from apprun.kernel.db import Database
from tests.support.accounts import bearer, register
from tests.support.outbox import events_since, outbox_mark

CREATED, UPDATED, DELETED = "apprun.object.created", "apprun.object.updated", "apprun.object.deleted"


def _storage(client: Any, tokens: dict[str, Any]) -> AsyncStorageClient:
    return AsyncStorageClient(f"{client.base_url}/storage/v1/", bearer(tokens), http_client=client)


async def _types(db: Database, mark: str) -> list[str]:
    return await events_since(db, mark)


async def test_buckets_through_the_client(client: Any) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    assert await storage.create_bucket("avatars") == {"name": "avatars"}
    await storage.create_bucket(
        "docs", options={"public": True, "file_size_limit": 1024, "allowed_mime_types": ["text/*", "application/pdf"]}
    )
    listed = await storage.list_buckets()
    assert [(b.id, b.name, b.public) for b in listed] == [("avatars", "avatars", False), ("docs", "docs", True)]
    assert listed[0].owner == owner["user"]["id"]
    docs = await storage.get_bucket("docs")
    assert (docs.file_size_limit, docs.allowed_mime_types) == (1024, ["text/*", "application/pdf"])
    await storage.update_bucket("docs", {"public": False, "file_size_limit": 2048})
    docs = await storage.get_bucket("docs")
    assert (docs.public, docs.file_size_limit, docs.allowed_mime_types) == (False, 2048, ["text/*", "application/pdf"])
    with pytest.raises(StorageApiError) as taken:
        await storage.create_bucket("avatars")
    assert (taken.value.status, taken.value.code) == ("409", "Duplicate")
    with pytest.raises(StorageApiError) as missing:
        await storage.get_bucket("nope")
    assert (missing.value.status, missing.value.code) == ("404", "not_found")
    assert await storage.delete_bucket("avatars") == {"message": "Successfully deleted"}
    assert [b.id for b in await storage.list_buckets()] == ["docs"]
    # Another tenant's buckets are not there at all.
    assert await _storage(client, await register(client)).list_buckets() == []


async def test_objects_through_the_client(client: Any, db: Database) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    await storage.create_bucket("files")
    files = storage.from_("files")
    mark = await outbox_mark(db)
    uploaded = await files.upload(
        "reports/q1.txt", b"first quarter", {"content-type": "text/plain", "metadata": {"team": "sales"}}
    )
    assert (uploaded.path, uploaded.full_path) == ("reports/q1.txt", "files/reports/q1.txt")
    await files.upload("reports/q2.txt", b"second", {"content-type": "text/plain"})
    await files.upload("top.bin", b"\x00\x01\x02", {"content-type": "application/octet-stream"})
    assert await _types(db, mark) == [CREATED, CREATED, CREATED]

    with pytest.raises(StorageApiError) as exists:
        await files.upload("top.bin", b"again")
    assert (exists.value.status, exists.value.code) == ("409", "Duplicate")
    mark = await outbox_mark(db)
    await files.upload("top.bin", b"replaced", {"upsert": "true", "content-type": "application/octet-stream"})
    await files.update("reports/q2.txt", b"second, revised", {"content-type": "text/plain"})
    assert await _types(db, mark) == [UPDATED, UPDATED]

    assert await files.download("top.bin") == b"replaced"
    assert await files.download("reports/q2.txt") == b"second, revised"
    info = await files.info("reports/q1.txt")
    assert (info["name"], info["size"], info["content_type"], info["metadata"]) == (
        "reports/q1.txt", 13, "text/plain", {"team": "sales"},
    )  # fmt: skip
    assert await files.exists("reports/q1.txt") is True
    assert await files.exists("reports/none.txt") is False

    root = await files.list()
    assert [(e["name"], e["id"] is None) for e in root] == [("reports", True), ("top.bin", False)]
    assert root[1]["metadata"]["size"] == len(b"replaced")
    folder = await files.list("reports", {"sortBy": {"column": "name", "order": "desc"}})
    assert [e["name"] for e in folder] == ["q2.txt", "q1.txt"]
    assert [e["name"] for e in await files.list("reports", {"search": "Q1"})] == ["q1.txt"]
    assert [e["name"] for e in await files.list("reports", {"limit": 1, "offset": 1})] == ["q2.txt"]

    mark = await outbox_mark(db)
    await files.copy("reports/q1.txt", "archive/q1.txt")
    await files.move("reports/q2.txt", "archive/q2.txt")
    assert await _types(db, mark) == [CREATED, DELETED, CREATED]
    assert await files.download("archive/q1.txt") == b"first quarter"
    assert await files.download("archive/q2.txt") == b"second, revised"
    assert await files.exists("reports/q2.txt") is False

    mark = await outbox_mark(db)
    removed = await files.remove(["archive/q1.txt", "archive/none.txt"])
    assert [r["name"] for r in removed] == ["archive/q1.txt"]
    assert await _types(db, mark) == [DELETED]
    assert await storage.empty_bucket("files") == {"message": "Successfully emptied"}
    assert await files.list() == []
    assert await storage.delete_bucket("files") == {"message": "Successfully deleted"}


async def test_a_public_bucket_is_readable_without_a_token(client: Any) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    await storage.create_bucket("site", options={"public": True})
    await storage.create_bucket("private")
    await storage.from_("site").upload("index.html", b"<h1>hi</h1>", {"content-type": "text/html"})
    await storage.from_("private").upload("secret.txt", b"s", {"content-type": "text/plain"})
    url = await storage.from_("site").get_public_url("index.html")
    tenant = {"X-Tenant-Id": owner["tenant_id"]}
    reply = await client.get(url, headers=tenant)
    assert (reply.status_code, reply.content, reply.headers["content-type"]) == (200, b"<h1>hi</h1>", "text/html")
    assert reply.headers["cache-control"] == "max-age=3600"
    hidden = await client.get(await storage.from_("private").get_public_url("secret.txt"), headers=tenant)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "storage.bucket_not_found")
