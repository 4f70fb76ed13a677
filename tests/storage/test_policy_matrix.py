"""Who may do what to a bucket: role x operation → status, kept as data (Supabase Storage keeps its policy tests so).

The roles are the built-in ones of one tenant (rbac/model.py: members read
and write objects, viewers read them, owners and admins also manage
buckets), an outsider signed in to a tenant of their own, and an anonymous
caller. Each operation runs once per role, in the order of `ROLES`, against
the tenant's private bucket ``pics`` (with ``seed.txt`` in it); ``$role`` in
a path or body is the caller's role, so each caller works on keys of their
own. An outsider gets 404 (the bucket is not in their tenant), never 403;
an outsider's own bucket is theirs to create and delete.
"""

from __future__ import annotations

from typing import Any

import pytest

from apprun.kernel.db import Database
from tests.storage.conftest import people
from tests.support.accounts import bearer
from tests.support.scenarios import Case, run_all

pytestmark = pytest.mark.checklist(23)

ROLES = ("owner", "admin", "member", "viewer", "outsider", "anonymous")
TEXT = {"Content-Type": "text/plain"}
V1 = "/storage/v1"

#: operation, method, path, body (JSON, or bytes for an upload), extra headers, then the status for each of ROLES.
MATRIX: list[tuple[str, str, str, Any, dict[str, str], tuple[int, ...]]] = [
    ("list buckets",      "GET",    "/bucket",                   None, {}, (200, 200, 200, 200, 200, 401)),
    ("read a bucket",     "GET",    "/bucket/pics",              None, {}, (200, 200, 200, 200, 404, 401)),
    ("create a bucket",   "POST",   "/bucket",                   {"id": "b-$role"}, {}, (200, 200, 403, 403, 200, 401)),
    ("change a bucket",   "PUT",    "/bucket/pics",              {"public": False}, {}, (200, 200, 403, 403, 404, 401)),
    ("upload",            "POST",   "/object/pics/$role.txt",    b"mine", TEXT, (200, 200, 200, 403, 404, 401)),
    ("replace (upsert)",  "POST",   "/object/pics/seed.txt",     b"new", {**TEXT, "x-upsert": "true"},
                                                                                   (200, 200, 200, 403, 404, 401)),
    ("replace (PUT)",     "PUT",    "/object/pics/seed.txt",     b"newer", TEXT, (200, 200, 200, 403, 404, 401)),
    ("download",          "GET",    "/object/pics/seed.txt",     None, {}, (200, 200, 200, 200, 404, 401)),
    ("public path",       "GET",    "/object/public/pics/seed.txt", None, {}, (404, 404, 404, 404, 404, 404)),
    ("info",              "GET",    "/object/info/pics/seed.txt", None, {}, (200, 200, 200, 200, 404, 401)),
    ("list objects",      "POST",   "/object/list/pics",         {"prefix": ""}, {}, (200, 200, 200, 200, 404, 401)),
    ("copy",              "POST",   "/object/copy",
     {"bucketId": "pics", "sourceKey": "seed.txt", "destinationKey": "copy-$role.txt"}, {},
                                                                                   (200, 200, 200, 403, 404, 401)),
    ("move",              "POST",   "/object/move",
     {"bucketId": "pics", "sourceKey": "$role.txt", "destinationKey": "moved-$role.txt"}, {},
                                                                                   (200, 200, 200, 403, 404, 401)),
    ("remove",            "DELETE", "/object/pics",              {"prefixes": ["moved-$role.txt"]}, {},
                                                                                   (200, 200, 200, 403, 404, 401)),
    ("delete a bucket",   "DELETE", "/bucket/b-$role",           None, {}, (200, 200, 403, 403, 200, 401)),
    ("empty a bucket",    "POST",   "/bucket/pics/empty",        None, {}, (200, 200, 200, 403, 404, 401)),
]  # fmt: skip


def _cases() -> list[Case]:
    cases = []
    for operation, method, path, body, headers, statuses in MATRIX:
        assert len(statuses) == len(ROLES), operation
        for role, status in zip(ROLES, statuses, strict=True):
            raw = isinstance(body, bytes)
            cases.append(
                Case(
                    f"{role}: {operation}", method, V1 + path.replace("$role", role), headers=headers,
                    body=None if raw else _with_role(body, role), content=body if raw else None,
                    actor=None if role == "anonymous" else role, status=status,
                )
            )  # fmt: skip
    return cases


def _with_role(body: Any, role: str) -> Any:
    if isinstance(body, str):
        return body.replace("$role", role)
    if isinstance(body, list):
        return [_with_role(item, role) for item in body]
    if isinstance(body, dict):
        return {key: _with_role(value, role) for key, value in body.items()}
    return body


async def test_the_policy_matrix(client: Any, db: Database) -> None:
    crowd = await people(client, db)
    owner = bearer(crowd["owner"])
    assert (await client.post(f"{V1}/bucket", json={"id": "pics"}, headers=owner)).status_code == 200
    seeded = await client.post(f"{V1}/object/pics/seed.txt", content=b"seed", headers={**owner, **TEXT})
    assert seeded.status_code == 200, seeded.text
    credentials = {name: bearer(tokens) for name, tokens in crowd.items()}

    def prepare(case: Case) -> Case:
        return case.with_credentials(credentials[case.actor]) if case.actor else case

    await run_all(client, _cases(), db, prepare=prepare)
