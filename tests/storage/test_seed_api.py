"""The seed architecture's paths, ``POST /api/v1/storage/upload`` and ``GET /api/v1/storage/download/{key}``."""

from __future__ import annotations

from typing import Any

from apprun.kernel.db import Database
from tests.support.accounts import bearer, register
from tests.support.scenarios import Case, run_all

UPLOAD = "/api/v1/storage/upload"
CREATED = "apprun.object.created"


def _form(*fields: tuple[str, str], file: bytes = b"hello", filename: str = "hello.txt") -> bytes:
    parts = [f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in fields]
    parts.append(
        f'--B\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
    )
    return "".join(parts).encode() + file + b"\r\n--B--\r\n"


FORM = {"Content-Type": "multipart/form-data; boundary=B"}
#: A form with a second file after the first.
TWO_FILES = (
    _form(("key", "two.txt"))[: -len(b"--B--\r\n")]
    + b'--B\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\nx\r\n--B--\r\n'
)

CASES = [
    Case("anonymous", "POST", UPLOAD, headers=FORM, content=_form(), status=401, code="auth.unauthorized", events=[]),
    Case("into the default bucket", "POST", UPLOAD, actor="owner", headers=FORM, content=_form(("key", "notes/a.txt")),
         status=201, json={"bucket": "default", "key": "notes/a.txt", "size": 5, "mime_type": "text/plain",
                           "url": "/api/v1/storage/download/notes/a.txt"}, events=[CREATED]),
    Case("download it", "GET", "/api/v1/storage/download/notes/a.txt", actor="owner", contains=["hello"]),
    Case("download it as a file", "GET", "/api/v1/storage/download/notes/a.txt", (("download", "x.txt"),),
         actor="owner", response_headers={"Content-Disposition": "attachment; filename=\"x.txt\"; "
                                                                 "filename*=UTF-8''x.txt"}),
    Case("the same key again", "POST", UPLOAD, actor="owner", headers=FORM, content=_form(("key", "notes/a.txt")),
         status=409, code="storage.object_exists", events=[]),
    Case("a bad key", "POST", UPLOAD, actor="owner", headers=FORM, content=_form(("key", "../../etc/passwd")),
         status=400, code="storage.invalid_key", events=[]),
    Case("a bucket that does not exist", "POST", UPLOAD, (("bucket", "nope"),), actor="owner", headers=FORM,
         content=_form(), status=404, code="storage.bucket_not_found", events=[]),
    Case("not a form", "POST", UPLOAD, actor="owner", content=b"hello", headers={"Content-Type": "text/plain"},
         status=400, code="storage.malformed_multipart", events=[]),
    Case("two files", "POST", UPLOAD, actor="owner", headers=FORM, content=TWO_FILES,
         status=400, code="storage.one_file_only", events=[]),
    Case("outsider cannot download it", "GET", "/api/v1/storage/download/notes/a.txt", actor="outsider", status=404,
         code="storage.bucket_not_found"),
]  # fmt: skip


async def test_the_seed_paths(client: Any, db: Database) -> None:
    people = {"owner": bearer(await register(client)), "outsider": bearer(await register(client))}

    def prepare(case: Case) -> Case:
        return case.with_credentials(people[case.actor]) if case.actor else case

    await run_all(client, CASES, db, prepare=prepare)
    named = await client.post(UPLOAD, content=_form(filename="report.pdf"), headers={**people["owner"], **FORM})
    assert named.status_code == 201, named.text
    assert named.json()["key"].endswith("/report.pdf")
    listed = await client.get("/storage/v1/bucket/default", headers=people["owner"])
    assert listed.json()["public"] is False
