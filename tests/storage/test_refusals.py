"""The storage API over plain HTTP: what is refused, with which status and code, and that it changed nothing.

One table per endpoint family, run by `run_all` on both databases. Rows name
their caller (``actor``) and the object they were prepared with (``$etag``).
A refused request writes no event (``events=[]``) and, for uploads, leaves no
bytes behind: `_nothing_staged` checks the staging directory after every row.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.db import Database
from tests.storage.conftest import people, stored_keys
from tests.support.accounts import bearer
from tests.support.same_loop import same_loop_client
from tests.support.scenarios import Case, run_all

pytestmark = pytest.mark.checklist(20, 21)

V1 = "/storage/v1"
OBJ = f"{V1}/object/files"
CREATED, UPDATED, DELETED = "apprun.object.created", "apprun.object.updated", "apprun.object.deleted"
TEXT = {"Content-Type": "text/plain"}
#: A client that accepts gzip: file bytes are still served as stored (``SKIP_COMPRESSION``), with their
#: length and ranges true.
GZIP = {"Accept-Encoding": "gzip"}
PNG = {"Content-Type": "image/png"}

#: Keys in a URL that must never reach a backend. A plain ``..``, ``.`` or ``//`` in a URL is resolved by the
#: client or the router before apprun sees it (into another path of the same tenant, tested below with
#: JSON bodies, which nothing resolves); percent-encoded, they arrive as written and are refused.
BAD_KEYS = [
    ("encoded dot-dot", "a/%2e%2e/%2e%2e/etc/passwd"),
    ("encoded dot-dot, upper case", "%2E%2E/x"),
    ("encoded dot segment", "a/%2e/b"),
    ("backslash", "a\\..\\b"),
    ("drive letter via backslash", "C:\\Windows\\win.ini"),
    ("UNC path", "\\\\server\\share\\x"),
    ("NUL byte", "a%00b"),
    ("newline", "a%0Ab"),
    ("too long", "k" * 200 + "/" + "x" * 900),
    ("segment too long", "x" * 256),
]

UPLOADS = [
    Case("anonymous upload", "POST", f"{OBJ}/a.txt", content=b"x", headers=TEXT, status=401,
         code="auth.unauthorized", json={"statusCode": "401", "error": "unauthorized"}, events=[]),
    Case("viewer may not upload", "POST", f"{OBJ}/a.txt", actor="viewer", content=b"x", headers=TEXT, status=403,
         code="auth.forbidden", events=[]),
    Case("outsider: no such bucket in their tenant", "POST", f"{OBJ}/a.txt", actor="outsider", content=b"x",
         headers=TEXT, status=404, code="storage.bucket_not_found", events=[]),
    *[
        Case(f"bad key: {name}", "POST", f"{OBJ}/{key}", actor="member", content=b"x", headers=TEXT, status=400,
             code="storage.invalid_key", events=[])
        for name, key in BAD_KEYS
    ],
    Case("over the bucket's size limit", "POST", f"{OBJ}/big.txt", actor="member", content=b"x" * 65, headers=TEXT,
         status=413, code="storage.too_large", json={"statusCode": "413"}, events=[]),
    Case("a type the bucket refuses", "POST", f"{OBJ}/a.png", actor="member", content=b"\x89PNG", headers=PNG,
         status=400, code="storage.mime_type_not_allowed", events=[]),
    Case("a refused type in a form", "POST", f"{OBJ}/a.png", actor="member", status=400,
         headers={"Content-Type": "multipart/form-data; boundary=XX"},
         content=b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                 b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--XX--\r\n",
         code="storage.mime_type_not_allowed", events=[]),
    Case("a form without a file", "POST", f"{OBJ}/a.txt", actor="member", status=400,
         headers={"Content-Type": "multipart/form-data; boundary=XX"},
         content=b'--XX\r\nContent-Disposition: form-data; name="cacheControl"\r\n\r\n60\r\n--XX--\r\n',
         code="storage.no_file", events=[]),
    Case("a broken form", "POST", f"{OBJ}/a.txt", actor="member", status=400,
         headers={"Content-Type": "multipart/form-data; boundary=XX"}, content=b"--XX\r\nnonsense",
         code="storage.malformed_multipart", events=[]),
    Case("member uploads", "POST", f"{OBJ}/a.txt", actor="member", content=b"hello", headers=TEXT,
         json={"Key": "files/a.txt"}, events=[CREATED]),
    Case("again, without x-upsert", "POST", f"{OBJ}/a.txt", actor="member", content=b"hello", headers=TEXT,
         status=409, code="storage.object_exists", json={"error": "Duplicate"}, events=[]),
    Case("PUT of a missing object", "PUT", f"{OBJ}/none.txt", actor="member", content=b"x", headers=TEXT,
         status=404, code="storage.object_not_found", json={"error": "not_found"}, events=[]),
    Case("a key beside a file of the same name", "POST", f"{OBJ}/a.txt/b.txt", actor="member", content=b"x",
         headers=TEXT, status=409, code="storage.key_conflict", events=[]),
    Case("with x-upsert", "POST", f"{OBJ}/a.txt", actor="member", content=b"hello!",
         headers={**TEXT, "x-upsert": "true"},
         events=[UPDATED]),
]  # fmt: skip

DOWNLOADS = [
    Case("anonymous download", "GET", f"{OBJ}/a.txt", status=401, code="auth.unauthorized", events=[]),
    Case("outsider: not found", "GET", f"{OBJ}/a.txt", actor="outsider", status=404, code="storage.bucket_not_found"),
    Case("outsider: not found by the public path either", "GET", f"{V1}/object/public/files/a.txt", actor="outsider",
         status=404, code="storage.bucket_not_found"),
    Case("a private bucket is not public", "GET", f"{V1}/object/public/files/a.txt",
         headers={"X-Tenant-Id": "$tenant"}, status=404, code="storage.bucket_not_found"),
    Case("missing object", "GET", f"{OBJ}/none.txt", actor="viewer", status=404, code="storage.object_not_found"),
    Case("bad key", "GET", f"{OBJ}/a/%2e%2e/x", actor="viewer", status=400, code="storage.invalid_key"),
    Case("viewer downloads", "GET", f"{OBJ}/a.txt", actor="viewer", headers=GZIP, contains=["hello!"],
         response_headers={"ETag": '"$etag"', "Content-Type": "text/plain", "Content-Length": "6",
                           "Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes",
                           "X-Content-Type-Options": "nosniff",
                           "Content-Security-Policy": re.compile("default-src 'none'.*")}),
    Case("not modified", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"If-None-Match": '"$etag"'}, status=304,
         response_headers={"ETag": '"$etag"'}),
    Case("another etag", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"If-None-Match": '"nope"'},
         contains=["hello!"]),
    Case("a range", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"Range": "bytes=1-3", **GZIP}, status=206,
         contains=["ell"], absent=["hello"], response_headers={"Content-Range": "bytes 1-3/6", "Content-Length": "3"}),
    Case("a suffix range", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"Range": "bytes=-2"}, status=206,
         contains=["o!"], response_headers={"Content-Range": "bytes 4-5/6"}),
    Case("an open range", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"Range": "bytes=4-"}, status=206,
         response_headers={"Content-Range": "bytes 4-5/6"}),
    Case("a range past the end", "GET", f"{OBJ}/a.txt", actor="viewer", headers={"Range": "bytes=6-"}, status=416,
         code="storage.range_not_satisfiable", response_headers={"Content-Range": "bytes */6"}),
    Case("several ranges: the whole object", "GET", f"{OBJ}/a.txt", actor="viewer",
         headers={"Range": "bytes=0-1,3-4"}, contains=["hello!"]),
    Case("download as a file", "GET", f"{OBJ}/a.txt", (("download", 'r"e;po\r\nrt.txt'),), actor="viewer",
         response_headers={"Content-Disposition": "attachment; filename=\"r_e_po__rt.txt\"; "
                                                  "filename*=UTF-8''r_e_po__rt.txt"}),
    Case("download under its own name", "GET", f"{OBJ}/a.txt", (("download", ""),), actor="viewer",
         response_headers={"Content-Disposition": re.compile(r'attachment; filename="a\.txt".*')}),
]  # fmt: skip

BUCKETS = [
    Case("anonymous list", "GET", f"{V1}/bucket", status=401, code="auth.unauthorized"),
    Case("member may not create a bucket", "POST", f"{V1}/bucket", actor="member", body={"id": "mine"}, status=403,
         code="auth.forbidden"),
    Case("a bad bucket name", "POST", f"{V1}/bucket", actor="owner", body={"id": "../x"}, status=400,
         code="storage.invalid_bucket_name"),
    Case("a reserved bucket name", "POST", f"{V1}/bucket", actor="owner", body={"id": "public"}, status=400,
         code="storage.invalid_bucket_name"),
    Case("a limit above the server's", "POST", f"{V1}/bucket", actor="owner",
         body={"id": "huge", "file_size_limit": 10**15}, status=400, code="storage.invalid_size_limit"),
    Case("bad MIME types", "POST", f"{V1}/bucket", actor="owner", body={"id": "m", "allowed_mime_types": ["nope"]},
         status=400, code="storage.invalid_mime_types"),
    Case("an unknown field", "POST", f"{V1}/bucket", actor="owner", body={"id": "u", "color": "red"}, status=400),
    Case("outsider cannot see it", "GET", f"{V1}/bucket/files", actor="outsider", status=404,
         code="storage.bucket_not_found"),
    Case("outsider cannot delete it", "DELETE", f"{V1}/bucket/files", actor="outsider", status=404,
         code="storage.bucket_not_found"),
    Case("not empty", "DELETE", f"{V1}/bucket/files", actor="owner", status=409, code="storage.bucket_not_empty"),
    Case("Chinese", "DELETE", f"{V1}/bucket/files", actor="owner", headers={"Accept-Language": "zh-CN"},
         status=409, contains=["不为空"]),
    Case("listing a bad limit", "POST", f"{OBJ.replace('object/', 'object/list/')}", actor="viewer",
         body={"limit": 0}, status=400, code="storage.invalid_list_options"),
    *[
        Case(f"copy to a bad key: {key!r}", "POST", f"{V1}/object/copy", actor="member",
             body={"bucketId": "files", "sourceKey": "a.txt", "destinationKey": key}, status=400,
             code="storage.invalid_key", events=[])
        for key in ("../../../etc/passwd", "/etc/passwd", "a/./b", "a//b", "..", "a\x00b", "C:\\x", "a\nb")
    ],
    Case("move to a traversal", "POST", f"{V1}/object/move", actor="member",
         body={"bucketId": "files", "sourceKey": "a.txt", "destinationKey": "x/../../../y"}, status=400,
         code="storage.invalid_key", events=[]),
    Case("remove by a traversal", "DELETE", OBJ, actor="member", body={"prefixes": ["../a.txt"]}, status=400,
         code="storage.invalid_key", events=[]),
    Case("removing too many", "DELETE", OBJ, actor="member", body={"prefixes": ["k"] * 1001}, status=400,
         code="storage.too_many_keys", events=[]),
    Case("moving to another bucket", "POST", f"{V1}/object/move", actor="member",
         body={"bucketId": "files", "sourceKey": "a.txt", "destinationKey": "b.txt", "destinationBucket": "x"},
         status=400, code="storage.cross_bucket", events=[]),
    Case("viewer may not remove", "DELETE", OBJ, actor="viewer", body={"prefixes": ["a.txt"]}, status=403,
         code="auth.forbidden", events=[]),
    Case("outsider removes nothing", "DELETE", OBJ, actor="outsider", body={"prefixes": ["a.txt"]}, status=404,
         code="storage.bucket_not_found", events=[]),
]  # fmt: skip


def _nothing_staged(settings: Any) -> None:
    staged = [key for key in stored_keys(settings) if key.startswith(".staging/")]
    assert staged == [], staged


async def test_refusals(client: Any, db: Database, settings: Any) -> None:
    crowd = await people(client, db)
    owner = crowd["owner"]
    reply = await client.post(
        f"{V1}/bucket",
        json={"id": "files", "file_size_limit": 64, "allowed_mime_types": ["text/*"]},
        headers=bearer(owner),
    )
    assert reply.status_code == 200, reply.text
    values = {"tenant": owner["tenant_id"]}
    headers = {name: bearer(tokens) for name, tokens in crowd.items()}

    def prepare(case: Case) -> Case:
        filled = case.filled(values)
        return filled.with_credentials(headers[case.actor]) if case.actor else filled

    async def nothing_staged(case: Case) -> None:
        _nothing_staged(settings)

    # ``a`` and ``a/b`` are two keys in S3, where nothing conflicts: that row is the local disk's.
    uploads = [c for c in UPLOADS if settings.storage_backend == "local" or c.code != "storage.key_conflict"]
    await run_all(client, uploads, db, prepare=prepare, after=nothing_staged)
    # Nothing was written outside the tenant's bucket, on local disk or in S3.
    assert stored_keys(settings) == [f"{owner['tenant_id']}/files/a.txt"]
    assert (await client.get(f"{OBJ}/a.txt", headers=headers["viewer"])).content == b"hello!"

    info = await client.get(f"{V1}/object/info/files/a.txt", headers=headers["viewer"])
    values["etag"] = info.json()["etag"].strip('"')
    await run_all(client, DOWNLOADS, db, prepare=prepare)
    await run_all(client, BUCKETS, db, prepare=prepare)


async def test_the_size_limit_holds_for_a_body_that_lies_about_its_length(
    client: Any, db: Database, settings: Any
) -> None:
    """A body longer than its Content-Length says: the upload is cut off at the limit as the bytes arrive."""
    owner = await register_with_bucket(client, {"id": "small", "file_size_limit": 1000})
    headers = {**bearer(owner), "Content-Length": "10"}
    reply = await client.post(f"{OBJ.replace('files', 'small')}/big.bin", content=b"x" * 10_000, headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (413, "storage.too_large")
    _nothing_staged(settings)
    async with db.read() as conn:
        assert await conn.fetchval("SELECT count(*) FROM apprun_storage_objects") == 0


async def register_with_bucket(client: Any, bucket: dict[str, Any]) -> dict[str, Any]:
    from tests.support.accounts import register

    owner = await register(client)
    reply = await client.post(f"{V1}/bucket", json=bucket, headers=bearer(owner))
    assert reply.status_code == 200, reply.text
    return owner


async def test_uploads_stream_past_the_kernels_body_limit_up_to_the_largest_object(
    make_settings: Any, tmp_path: Path
) -> None:
    """HTTP_MAX_BODY_BYTES bounds JSON bodies; an upload is bounded by STORAGE_MAX_FILE_SIZE, while it streams."""
    from apprun.app import create_app
    from apprun.storage.upload_body import FORM_OVERHEAD

    kib = 1024
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'big.db'}", http_max_body_bytes=64 * kib, storage_max_file_size=512 * kib
    )
    async with same_loop_client(create_app(settings, configure_logs=False)) as client:
        owner = await register_with_bucket(client, {"id": "files"})
        big = bytes(range(256)) * (300 * kib // 256)  # past the kernel's limit, within the module's
        raw = await client.post(f"{OBJ}/raw.bin", content=big, headers={**bearer(owner), **TEXT})
        form = await client.post(
            "/api/v1/storage/upload?bucket=files&key=form.bin", files={"file": ("f.bin", big)}, headers=bearer(owner)
        )
        back = await client.get(f"{OBJ}/raw.bin", headers={**bearer(owner), **GZIP})
        declared = await client.post(
            f"{OBJ}/declared.bin", content=b"x" * (512 * kib + FORM_OVERHEAD + 1), headers={**bearer(owner), **TEXT}
        )

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: sent chunk by chunk
            for _ in range(600):
                yield b"x" * kib

        streamed = await client.post(f"{OBJ}/streamed.bin", content=chunked(), headers={**bearer(owner), **TEXT})
        json_body = await client.post(
            f"{V1}/object/list/files", content=b'{"prefix": "' + b"x" * (100 * kib) + b'"}', headers=bearer(owner)
        )
    assert raw.status_code == 200, raw.text
    assert form.status_code == 201, form.text
    assert (back.status_code, back.content, back.headers.get("content-encoding")) == (200, big, None)
    # A declared length past the largest object and a form's fields: refused before the handler runs.
    assert (declared.status_code, declared.json()["code"]) == (413, "http.payload_too_large")
    # No length declared: cut off at the first byte past STORAGE_MAX_FILE_SIZE.
    assert (streamed.status_code, streamed.json()["code"]) == (413, "storage.too_large")
    # The storage routes that take JSON keep the kernel's limit.
    assert json_body.status_code == 413, json_body.text
