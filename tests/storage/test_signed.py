"""Signed download and upload links: with Supabase's Python client, then every refusal as a table.

A link is a capability for one object, one method, one tenant, until a time
(checklist 22): the tables try it on every other key, bucket, method and
tenant, expired, tampered, and swapped with an access token both ways.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError
from storage3.types import CreateSignedUploadUrlOptions

from apprun.kernel.db import Database
from apprun.storage.signing import MAX_EXPIRY, Grant, Signer
from tests.storage.conftest import people, switch
from tests.support.accounts import bearer, join, register
from tests.support.outbox import events_since, outbox_mark
from tests.support.scenarios import Case, run_all

pytestmark = pytest.mark.checklist(22)

V1 = "/storage/v1"
CREATED, UPDATED = "apprun.object.created", "apprun.object.updated"
TEXT = {"Content-Type": "text/plain"}


def _storage(client: Any, tokens: dict[str, Any]) -> AsyncStorageClient:
    return AsyncStorageClient(f"{client.base_url}/storage/v1/", bearer(tokens), http_client=client)


def _token(url: str) -> str:
    return parse_qs(urlparse(url).query)["token"][0]


async def test_signed_downloads_through_the_client(client: Any) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    await storage.create_bucket("docs")
    docs = storage.from_("docs")
    await docs.upload("q1/report one.txt", b"first quarter", {"content-type": "text/plain"})
    await docs.upload("q2.txt", b"second", {"content-type": "text/plain"})

    signed = await docs.create_signed_url("q1/report one.txt", 60)
    assert urlparse(signed["signedURL"]).path == "/storage/v1/object/sign/docs/q1/report%20one.txt"
    # Anyone holding the link: no Authorization header.
    reply = await client.get(signed["signedURL"])
    assert (reply.status_code, reply.content, reply.headers["content-type"]) == (200, b"first quarter", "text/plain")
    assert reply.headers["cache-control"] == "private, max-age=3600"

    as_file = await docs.create_signed_url("q2.txt", 60, {"download": "second.txt"})
    reply = await client.get(as_file["signedURL"])
    assert reply.headers["content-disposition"].startswith('attachment; filename="second.txt"')

    many = await docs.create_signed_urls(["q2.txt", "none.txt", "q1/report one.txt"], 60)
    assert [(m["path"], m["error"] is None) for m in many] == [
        ("q2.txt", True), ("none.txt", False), ("q1/report one.txt", True),
    ]  # fmt: skip
    assert many[1]["signedURL"] is None
    assert (await client.get(many[0]["signedURL"])).content == b"second"
    assert (await client.get(many[2]["signedURL"])).content == b"first quarter"

    with pytest.raises(StorageApiError) as missing:
        await docs.create_signed_url("none.txt", 60)
    assert (missing.value.status, missing.value.code) == ("404", "not_found")
    with pytest.raises(StorageApiError) as too_long:
        await docs.create_signed_url("q2.txt", MAX_EXPIRY + 1)
    assert too_long.value.status == "400"


async def test_signed_uploads_through_the_client(client: Any, db: Database) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    await storage.create_bucket("inbox")
    inbox = storage.from_("inbox")

    link = await inbox.create_signed_upload_url("drop/a.txt")
    assert urlparse(link["signed_url"]).path == "/storage/v1/object/upload/sign/inbox/drop/a.txt"
    # The holder needs no token of their own: a client without one uploads.
    anonymous = AsyncStorageClient(f"{client.base_url}/storage/v1/", {}, http_client=client).from_("inbox")
    mark = await outbox_mark(db)
    uploaded = await anonymous.upload_to_signed_url(
        "drop/a.txt", link["token"], b"dropped", {"content-type": "text/plain"}
    )
    assert uploaded.full_path == "inbox/drop/a.txt"
    assert await inbox.download("drop/a.txt") == b"dropped"
    info = await inbox.info("drop/a.txt")
    assert (info["content_type"], info["size"]) == ("text/plain", 7)
    # The object is its creator's, not an anonymous one.
    async with db.read() as conn:
        assert await conn.fetchval("SELECT owner FROM apprun_storage_objects") == owner["user"]["id"]

    # Used again, the link makes no second object and replaces nothing: 409, no event.
    with pytest.raises(StorageApiError) as again:
        await anonymous.upload_to_signed_url("drop/a.txt", link["token"], b"again", {"content-type": "text/plain"})
    assert (again.value.status, again.value.code) == ("409", "Duplicate")
    assert await events_since(db, mark) == [CREATED]
    assert await inbox.download("drop/a.txt") == b"dropped"

    # An upsert link replaces the object, as often as it is used until it expires.
    upsert = await inbox.create_signed_upload_url("drop/a.txt", CreateSignedUploadUrlOptions(upsert="true"))
    for body in (b"v2", b"v3"):
        await anonymous.upload_to_signed_url("drop/a.txt", upsert["token"], body, {"content-type": "text/plain"})
    assert await inbox.download("drop/a.txt") == b"v3"
    assert await events_since(db, mark) == [CREATED, UPDATED, UPDATED]


def _cases(signer: Signer) -> list[Case]:
    ok = f"{V1}/object/sign/files/a.txt"
    put = f"{V1}/object/upload/sign/files/new.txt"
    return [
        # Who may sign.
        Case("anonymous may not sign", "POST", ok, body={"expiresIn": 60}, status=401, code="auth.unauthorized"),
        Case("outsider: no such bucket", "POST", f"{V1}/object/sign/other/a.txt", actor="outsider",
             body={"expiresIn": 60}, status=404,
             code="storage.bucket_not_found"),
        Case("an object that is not there", "POST", f"{V1}/object/sign/files/none.txt", actor="viewer",
             body={"expiresIn": 60}, status=404, code="storage.object_not_found"),
        Case("a bad key", "POST", f"{V1}/object/sign/files/a/%2e%2e/x", actor="viewer", body={"expiresIn": 60},
             status=400, code="storage.invalid_key"),
        Case("viewer may not sign an upload", "POST", put, actor="viewer", status=403, code="auth.forbidden"),
        Case("member may not sign an upsert without update", "POST", put, actor="creator",
             headers={"x-upsert": "true"}, status=403, code="auth.forbidden"),
        Case("anonymous may not sign an upload", "POST", put, status=401, code="auth.unauthorized"),
        # How long.
        *[
            Case(f"expiresIn {value!r}", "POST", ok, actor="viewer", body={"expiresIn": value}, status=400,
                 code="storage.invalid_expiry")
            for value in (0, -5, MAX_EXPIRY + 1, "soon", "1e3", 1.5, True)
        ],
        Case("the longest expiry", "POST", ok, actor="viewer", body={"expiresIn": MAX_EXPIRY},
             contains=['{"signedURL":"/object/sign/files/a.txt?token=ey']),
        Case("too many paths", "POST", f"{V1}/object/sign/files", actor="viewer",
             body={"expiresIn": 60, "paths": ["a.txt"] * 1001}, status=400, code="storage.too_many_paths"),
        # Using a download link.
        Case("the link", "GET", ok, (("token", "$get"),), contains=["hello"],
             response_headers={"ETag": '"$etag"', "Content-Length": "5", "Accept-Ranges": "bytes"}),
        Case("a range of it", "GET", ok, (("token", "$get"),), headers={"Range": "bytes=1-2"}, status=206,
             contains=["el"], absent=["hello"], response_headers={"Content-Range": "bytes 1-2/5"}),
        Case("not modified", "GET", ok, (("token", "$get"),), headers={"If-None-Match": '"$etag"'}, status=304),
        Case("signed in elsewhere changes nothing", "GET", ok, (("token", "$get"),), actor="outsider",
             headers={"X-Tenant-Id": "$other_tenant"}, contains=["hello"]),
        Case("another tenant's link to its own files/a.txt serves its own", "GET", ok, (("token", "$other_get"),),
             contains=["theirs"], absent=["hello"]),
        Case("for another key", "GET", f"{V1}/object/sign/files/b.txt", (("token", "$get"),), status=403,
             code="storage.signature_invalid", json={"statusCode": "403", "error": "forbidden"}),
        Case("for another bucket", "GET", f"{V1}/object/sign/other/a.txt", (("token", "$get"),), status=403,
             code="storage.signature_invalid"),
        Case("an upload link to download", "GET", f"{V1}/object/sign/files/new.txt", (("token", "$put"),),
             status=403, code="storage.signature_invalid"),
        Case("expired", "GET", ok, (("token", "$expired"),), status=403, code="storage.signature_expired"),
        Case("tampered", "GET", ok, (("token", "$tampered"),), status=403, code="storage.signature_invalid"),
        Case("another tenant's scope forged in", "GET", ok, (("token", "$forged_scope"),), status=403,
             code="storage.signature_invalid"),
        Case("an access token as a link", "GET", ok, (("token", "$access"),), status=403,
             code="storage.signature_invalid"),
        Case("no token", "GET", ok, status=400),
        Case("garbage", "GET", ok, (("token", "x.y.z"),), status=403, code="storage.signature_invalid"),
        Case("a link as an access token", "GET", f"{V1}/bucket", headers={"Authorization": "Bearer $get"},
             status=401),
        Case("a link as an access token for the object", "GET", f"{V1}/object/files/a.txt",
             headers={"Authorization": "Bearer $get"}, status=401),
        # Using an upload link.
        Case("a download link to upload", "PUT", f"{V1}/object/upload/sign/files/a.txt", (("token", "$get"),),
             content=b"x", headers=TEXT, status=403, code="storage.signature_invalid", events=[]),
        Case("an upload link for another key", "PUT", f"{V1}/object/upload/sign/files/other.txt",
             (("token", "$put"),), content=b"x", headers=TEXT, status=403, code="storage.signature_invalid",
             events=[]),
        Case("an expired upload link", "PUT", put, (("token", "$put_expired"),), content=b"x", headers=TEXT,
             status=403, code="storage.signature_expired", events=[]),
        Case("the bucket's limits hold", "PUT", put, (("token", "$put"),), content=b"x" * 65, headers=TEXT,
             status=413, code="storage.too_large", events=[]),
        Case("the bucket's types hold", "PUT", put, (("token", "$put"),), content=b"x",
             headers={"Content-Type": "image/png"}, status=400, code="storage.mime_type_not_allowed", events=[]),
        Case("x-upsert in the request is not the link's", "PUT", f"{V1}/object/upload/sign/files/a.txt",
             (("token", "$put_a"),), content=b"x", headers={**TEXT, "x-upsert": "true"}, status=409,
             code="storage.object_exists", events=[]),
        Case("the upload link", "PUT", put, (("token", "$put"),), content=b"new", headers=TEXT,
             json={"Key": "files/new.txt"}, events=[CREATED]),
        Case("once", "PUT", put, (("token", "$put"),), content=b"newer", headers=TEXT, status=409,
             code="storage.object_exists", events=[]),
    ]  # fmt: skip


async def test_refusals(client: Any, db: Database, settings: Any) -> None:
    crowd = await people(client, db)
    owner, outsider = crowd["owner"], crowd["outsider"]
    for who, content in ((owner, b"hello"), (outsider, b"theirs")):
        reply = await client.post(
            f"{V1}/bucket", json={"id": "files", "file_size_limit": 64, "allowed_mime_types": ["text/*"]},
            headers=bearer(who),
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        reply = await client.post(f"{V1}/object/files/a.txt", content=content, headers={**bearer(who), **TEXT})
        assert reply.status_code == 200, reply.text
    await client.post(f"{V1}/bucket", json={"id": "other"}, headers=bearer(owner))
    # A role that may create but not update, to sign an upload link but not an upsert one.
    for path, body in (
        ("/api/v1/roles", {"name": "creator"}),
        ("/api/v1/policies", {"role": "creator", "object": "bucket:files", "action": "create"}),
    ):
        reply = await client.post(path, json=body, headers=bearer(owner))
        assert reply.status_code == 201, reply.text
    creator = await register(client)
    await join(client, db, owner, creator, "creator")
    crowd["creator"] = await switch(client, creator, owner["tenant_id"])

    signer = Signer(settings.jwt_secret_value())
    tenant, other_tenant = owner["tenant_id"], outsider["tenant_id"]
    soon = int(time.time()) + 600

    async def signed(who: dict[str, Any], key: str) -> str:
        reply = await client.post(f"{V1}/object/sign/files/{key}", json={"expiresIn": 600}, headers=bearer(who))
        assert reply.status_code == 200, reply.text
        return _token(reply.json()["signedURL"])

    async def upload_link(key: str) -> str:
        reply = await client.post(f"{V1}/object/upload/sign/files/{key}", headers=bearer(crowd["member"]))
        assert reply.status_code == 200, reply.text
        assert reply.json()["url"].startswith(f"/object/upload/sign/files/{key}?token=")
        return str(reply.json()["token"])

    get = await signed(crowd["viewer"], "a.txt")
    header, payload, signature = get.split(".")
    info = await client.get(f"{V1}/object/info/files/a.txt", headers=bearer(owner))
    values = {
        "get": get,
        "other_get": await signed(outsider, "a.txt"),
        "put": await upload_link("new.txt"),
        "put_a": await upload_link("a.txt"),
        "expired": signer.sign(Grant("GET", tenant, "files", "a.txt", int(time.time()) - 1)),
        "put_expired": signer.sign(Grant("PUT", tenant, "files", "new.txt", int(time.time()) - 1)),
        "tampered": f"{header}.{payload}.{signature[:-4]}AAAA",
        "forged_scope": ".".join(
            [header, signer.sign(Grant("GET", other_tenant, "files", "a.txt", soon)).split(".")[1], signature]
        ),
        "access": owner["access_token"],
        "etag": info.json()["etag"].strip('"'),
        "other_tenant": other_tenant,
    }
    headers = {name: bearer(tokens) for name, tokens in crowd.items()}

    def prepare(case: Case) -> Case:
        filled = case.filled(values)
        return filled.with_credentials(headers[case.actor]) if case.actor else filled

    await run_all(client, _cases(signer), db, prepare=prepare)
