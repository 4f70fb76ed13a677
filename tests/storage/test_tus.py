"""TUS 1.0 resumable uploads at ``/storage/v1/upload/resumable``: the real ``tuspy`` client, and the refusals.

The client runs against a real ``apprun serve`` (`LiveServer`): tuspy speaks
through ``requests``, which needs a socket. An upload is sent in chunks and
interrupted twice, resumed from the offset ``HEAD`` gives after a reconnect
and after apprun restarts on the same data dir and database, and the object
then downloads byte-identical. The refusals are one scenario table, in
process, on both databases; expiry and the cleanup pass have a test of their
own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from tusclient.client import TusClient

from apprun.kernel.db import Database, create_database
from apprun.kernel.errors import BadRequest
from apprun.modules import Settings
from apprun.storage.service import Storage
from apprun.storage.tus import EXTENSIONS, parse_length
from apprun.storage.uploads import UPLOADS_DIR, Uploads
from tests.storage.conftest import people
from tests.support.accounts import bearer, register
from tests.support.live import LiveServer
from tests.support.outbox import events_since, outbox_mark
from tests.support.scenarios import Case, run_all

V1 = "/storage/v1"
TUS = f"{V1}/upload/resumable"
CREATED, UPDATED = "apprun.object.created", "apprun.object.updated"
T = {"Tus-Resumable": "1.0.0"}
OCTETS = {**T, "Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def creation(length: int, **pairs: str) -> dict[str, str]:
    fields = {"bucketName": "files", "objectName": "doc.txt", "contentType": "text/plain", **pairs}
    return {**T, "Upload-Length": str(length), "Upload-Metadata": metadata(**fields)}


def staged(root: Path) -> list[str]:
    directory = root / UPLOADS_DIR
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- the tuspy client, against a real server ------------------------------------------------------


async def test_tuspy_resumes_after_a_reconnect_a_dropped_connection_and_a_restart(
    tmp_path: Path, make_settings: Any, database_url: str
) -> None:
    settings: Settings = make_settings(database_url=database_url)
    data = os.urandom(3 * 1024 * 1024 + 12345)
    chunk = 256 * 1024
    live = LiveServer(tmp_path, {"DATABASE_URL": database_url})
    live.start()
    db = create_database(settings)
    await db.open()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            owner = await register(http)
            created = await http.post(f"{V1}/bucket", json={"id": "files"}, headers=bearer(owner))
            assert created.status_code == 200, created.text
            mark = await outbox_mark(db)
            tus = TusClient(live.url + TUS, headers=bearer(owner))
            meta = {"bucketName": "files", "objectName": "big/blob.bin", "contentType": "application/pdf"}
            first = tus.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, metadata=meta)
            # Three PATCHes, then the client goes away.
            first.upload(stop_at=3 * chunk)
            assert first.url is not None and first.url.startswith(live.url + TUS + "/")
            assert first.offset == 3 * chunk

            # A new client (a reconnect) asks HEAD for the offset and sends two more chunks.
            second = tus.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, url=first.url)
            assert second.offset == 3 * chunk
            second.upload(stop_at=5 * chunk)

            # A PATCH whose connection breaks off after 1.25 MiB: what arrived durably stays.
            async def broken() -> AsyncIterator[bytes]:
                for start in range(5 * chunk, 10 * chunk, 64 * 1024):
                    yield data[start : start + 64 * 1024]
                raise ConnectionResetError("the client went away")

            with pytest.raises((httpx.HTTPError, ConnectionResetError)):
                await http.patch(
                    first.url,
                    headers={**OCTETS, **bearer(owner), "Upload-Offset": str(5 * chunk)},
                    content=broken(),
                )
            kept = await _offset_when_settled(http, first.url, bearer(owner))
            assert kept >= 5 * chunk + 1024 * 1024, kept  # at least the checkpoint 1 MiB into the PATCH
            assert await events_since(db, mark) == []  # nothing committed yet

        # apprun stops and starts again on the same data dir and database; the upload is still there.
        live.stop()
        live.start()
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            third = tus.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, url=first.url)
            assert third.offset == kept
            third.upload()
            assert third.offset == len(data)

            got = await http.get(f"{V1}/object/files/big/blob.bin", headers=bearer(owner))
            assert got.status_code == 200, got.text
            assert got.content == data
            assert got.headers["content-type"] == "application/pdf"
            assert await events_since(db, mark) == [CREATED]
            # The upload is over: its state and staged bytes are gone.
            gone = await http.head(first.url, headers={**T, **bearer(owner)})
            assert gone.status_code == 404
            assert staged(settings.storage_root) == []
    finally:
        await db.close()
        live.stop()


async def _offset_when_settled(http: httpx.AsyncClient, url: str, auth: dict[str, str]) -> int:
    """The offset once the broken PATCH has finished on the server: an empty PATCH at HEAD's offset is
    refused while it runs (423: it holds the lock; 409: it moved the offset after HEAD answered)."""
    deadline = time.monotonic() + 10
    while True:
        reply = await http.head(url, headers={**T, **auth})
        assert reply.status_code == 200, reply.text
        probe = await http.patch(url, headers={**OCTETS, **auth, "Upload-Offset": reply.headers["upload-offset"]})
        if probe.status_code == 204:
            return int(probe.headers["upload-offset"])
        assert probe.status_code in (409, 423), probe.text
        assert time.monotonic() < deadline, "the broken PATCH never finished"
        await asyncio.sleep(0.05)


# --- the protocol and its refusals, in process ----------------------------------------------------


async def test_creation_with_upload_empty_uploads_upsert_and_termination(
    client: Any, db: Database, settings: Settings
) -> None:
    owner = await register(client)
    auth = bearer(owner)
    await client.post(f"{V1}/bucket", json={"id": "files"}, headers=auth)
    mark = await outbox_mark(db)
    # Creation with upload: the whole file in the POST.
    one = await client.post(TUS, headers={**creation(5), **auth, **OCTETS}, content=b"hello")
    assert (one.status_code, one.headers["upload-offset"]) == (201, "5"), one.text
    assert (await client.get(f"{V1}/object/files/doc.txt", headers=auth)).content == b"hello"
    # An empty file is an object at once.
    empty = await client.post(TUS, headers={**creation(0, objectName="empty.txt"), **auth})
    assert empty.status_code == 201, empty.text
    assert (await client.get(f"{V1}/object/files/empty.txt", headers=auth)).content == b""
    # x-upsert replaces; the metadata and cache control reach the object as a one-request upload's do.
    again = await client.post(
        TUS,
        headers={**creation(3, cacheControl="60", metadata='{"team":"a"}'), **auth, **OCTETS, "x-upsert": "true"},
        content=b"new",
    )
    assert again.status_code == 201, again.text
    info = (await client.get(f"{V1}/object/info/files/doc.txt", headers=auth)).json()
    assert (info["size"], info["metadata"], info["cache_control"]) == (3, {"team": "a"}, "max-age=60")
    assert await events_since(db, mark) == [CREATED, CREATED, UPDATED]
    # Termination: 204, then the upload is not found and its bytes are gone.
    started = await client.post(TUS, headers={**creation(10, objectName="later.txt"), **auth})
    url = started.headers["location"]
    assert staged(settings.storage_root) == [url.rsplit("/", 1)[1]]
    assert (await client.delete(url, headers={**T, **auth})).status_code == 204
    assert (await client.head(url, headers={**T, **auth})).status_code == 404
    assert staged(settings.storage_root) == []
    assert (await client.options(url)).headers["tus-max-size"] == str(settings.storage_max_file_size)


REFUSALS = [
    Case("OPTIONS needs no token", "OPTIONS", TUS, status=204,
         response_headers={"Tus-Version": "1.0.0", "Tus-Extension": EXTENSIONS}),
    Case("another TUS version", "POST", TUS, actor="member", headers={**creation(5), "Tus-Resumable": "0.2.2"},
         status=412, code="storage.tus_version", response_headers={"Tus-Version": "1.0.0"}, events=[]),
    Case("no Tus-Resumable on a PATCH", "PATCH", "$upload", actor="member", content=b"x",
         headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}, status=412,
         code="storage.tus_version", events=[]),
    Case("anonymous creation", "POST", TUS, headers=creation(5), status=401, code="auth.unauthorized", events=[]),
    Case("anonymous HEAD", "HEAD", "$upload", headers=T, status=401),
    Case("a viewer may not upload", "POST", TUS, actor="viewer", headers=creation(5), status=403,
         code="auth.forbidden", events=[]),
    Case("a viewer may not continue one", "PATCH", "$upload", actor="viewer", content=b"x",
         headers={**OCTETS, "Upload-Offset": "0"}, status=403, events=[]),
    Case("another tenant's upload: HEAD", "HEAD", "$upload", actor="outsider", headers=T, status=404,
         response_headers={"Tus-Resumable": "1.0.0"}),
    Case("another tenant's upload: PATCH", "PATCH", "$upload", actor="outsider", content=b"x",
         headers={**OCTETS, "Upload-Offset": "0"}, status=404, code="storage.upload_not_found", events=[]),
    Case("another tenant's upload: DELETE", "DELETE", "$upload", actor="outsider", headers=T, status=404,
         code="storage.upload_not_found"),
    Case("no bucket of that name in the outsider's tenant", "POST", TUS, actor="outsider", headers=creation(5),
         status=404, code="storage.bucket_not_found"),
    Case("an unknown upload id", "HEAD", f"{TUS}/01a236af-a98f-7dab-b3e0-42eea845d663", actor="member", headers=T,
         status=404),
    Case("not an upload id", "PATCH", f"{TUS}/nope", actor="member", content=b"x",
         headers={**OCTETS, "Upload-Offset": "0"}, status=404, code="storage.upload_not_found"),
    Case("offset mismatch", "PATCH", "$upload", actor="member", content=b"x",
         headers={**OCTETS, "Upload-Offset": "3"}, status=409, code="storage.tus_offset",
         json={"statusCode": "409"}, events=[]),
    Case("wrong content type", "PATCH", "$upload", actor="member", content=b"x",
         headers={**T, "Content-Type": "application/octet-stream", "Upload-Offset": "0"}, status=415,
         code="storage.tus_content_type", events=[]),
    Case("past the length", "PATCH", "$upload", actor="member", content=b"x" * 11,
         headers={**OCTETS, "Upload-Offset": "0"}, status=413, code="storage.tus_past_length", events=[]),
    Case("past the length, declared at creation", "POST", TUS, actor="member", content=b"x" * 6,
         headers={**creation(5), "Content-Type": "application/offset+octet-stream"}, status=400,
         code="storage.tus_header", events=[]),
    Case("Upload-Length over the bucket's limit", "POST", TUS, actor="member", headers=creation(65), status=413,
         code="storage.too_large", events=[]),
    Case("a type the bucket refuses", "POST", TUS, actor="member", headers=creation(5, contentType="image/png"),
         status=400, code="storage.mime_type_not_allowed", events=[]),
    Case("no objectName", "POST", TUS, actor="member",
         headers={**T, "Upload-Length": "5", "Upload-Metadata": metadata(bucketName="files")}, status=400,
         code="storage.tus_metadata", events=[]),
    Case("a bad key", "POST", TUS, actor="member", headers=creation(5, objectName="a/../../b"), status=400,
         code="storage.invalid_key", events=[]),
    Case("Upload-Length not a number", "POST", TUS, actor="member", headers={**creation(5), "Upload-Length": "-5"},
         status=400, code="storage.tus_header", events=[]),
    Case("Upload-Metadata not base64", "POST", TUS, actor="member",
         headers={**T, "Upload-Length": "5", "Upload-Metadata": "bucketName %%%"}, status=400,
         code="storage.tus_header", events=[]),
    Case("metadata not a JSON object", "POST", TUS, actor="member", headers=creation(5, metadata="[1]"),
         status=400, code="storage.invalid_metadata", events=[]),
    Case("the key is taken (no x-upsert)", "POST", TUS, actor="member", headers=creation(5, objectName="taken.txt"),
         status=409, code="storage.object_exists", events=[]),
    Case("expired: HEAD", "HEAD", "$expired", actor="member", headers=T, status=410),
    Case("expired: PATCH", "PATCH", "$expired", actor="member", content=b"x",
         headers={**OCTETS, "Upload-Offset": "0"}, status=410, code="storage.upload_expired", events=[]),
    Case("the upload is untouched by all of the above", "HEAD", "$upload", actor="member", headers=T,
         response_headers={"Upload-Offset": "0", "Upload-Length": "10", "Cache-Control": "no-store"}),
]  # fmt: skip


async def test_refusals(client: Any, db: Database) -> None:
    crowd = await people(client, db)
    owner, member = bearer(crowd["owner"]), bearer(crowd["member"])
    bucket = {"id": "files", "file_size_limit": 64, "allowed_mime_types": ["text/*"]}
    assert (await client.post(f"{V1}/bucket", json=bucket, headers=owner)).status_code == 200
    taken = await client.post(
        f"{V1}/object/files/taken.txt", content=b"x", headers={**member, "Content-Type": "text/plain"}
    )
    assert taken.status_code == 200, taken.text
    upload = (await client.post(TUS, headers={**creation(10), **member})).headers["location"]
    expired = (await client.post(TUS, headers={**creation(10, objectName="old.txt"), **member})).headers["location"]
    async with db.transaction() as conn:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await conn.execute("UPDATE apprun_storage_uploads SET expires_at = $1 WHERE id = $2", past, expired[-36:])

    def prepare(case: Case) -> Case:
        case = case.filled({"upload": upload, "expired": expired})
        return case.with_credentials(bearer(crowd[case.actor])) if case.actor else case

    await run_all(client, REFUSALS, db, prepare=prepare)


async def test_expired_uploads_and_orphaned_files_are_swept(client: Any, db: Database, settings: Settings) -> None:
    owner = await register(client)
    auth = bearer(owner)
    await client.post(f"{V1}/bucket", json={"id": "files"}, headers=auth)
    url = (await client.post(TUS, headers={**creation(10), **auth})).headers["location"]
    fresh = (await client.post(TUS, headers={**creation(10, objectName="fresh.txt"), **auth})).headers["location"]
    reply = await client.patch(url, headers={**OCTETS, **auth, "Upload-Offset": "0"}, content=b"abc")
    assert reply.status_code == 204, reply.text
    async with db.transaction() as conn:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        await conn.execute("UPDATE apprun_storage_uploads SET expires_at = $1 WHERE id = $2", past, url[-36:])
    assert (await client.head(url, headers={**T, **auth})).status_code == 410
    # A staged file with no row, older than the expiry (a crash between the file and the row).
    root = settings.storage_root
    orphan = root / UPLOADS_DIR / "01a236af-a98f-7dab-b3e0-000000000000"
    orphan.write_bytes(b"left over")
    old = time.time() - settings.storage_upload_expiry - 60
    os.utime(orphan, (old, old))

    # The cleanup pass the module runs periodically, here on the test's own pool (it needs nothing else).
    storage = Storage(db, cast(Any, None), cast(Any, None), cast(Any, None))
    uploads = Uploads(storage, root, expiry=dt.timedelta(seconds=settings.storage_upload_expiry))
    assert await uploads.sweep() == 2
    assert (await client.head(url, headers={**T, **auth})).status_code == 404
    assert staged(root) == [fresh[-36:]]
    assert (await client.head(fresh, headers={**T, **auth})).status_code == 200
    assert await uploads.sweep() == 0


@pytest.mark.parametrize("raw", ["", "-1", "1e3", "²", "٣", "1" * 19, " 5"])
def test_upload_length_is_ascii_digits(raw: str) -> None:
    # str.isdigit() accepts "²" and "٣", which int() refuses or reads: only ASCII digits are a length.
    with pytest.raises(BadRequest):
        parse_length({"upload-length": raw})
