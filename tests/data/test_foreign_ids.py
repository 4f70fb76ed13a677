"""Checklist 37 for the data API: no request tells an id of another tenant from an id no row has.

Each request below is sent twice by alice (tenant A): once naming carol's
row (tenant B) and once naming a fresh id. The two replies must be the same
(status, code, message, details, hint: everything but the request id), and
tenant B's rows must not change. ``PUT`` used to answer 404 for the first and
create a row (201) for the second.

The world is tests/data/test_security.py's: posts (``authenticated``, unique
title), comments pointing at posts, owner-only notes; alice and bob in
tenant A, carol in tenant B.
"""

from __future__ import annotations

from typing import Any

import pytest

from apprun.kernel.ids import new_id
from tests.data.test_security import CREATED, World, build_world, tenant_b_rows
from tests.support.scenarios import Case, run

pytestmark = pytest.mark.checklist(10, 37)

REPR = {"Prefer": "return=representation"}
MERGE = {"Prefer": "resolution=merge-duplicates"}
#: The answer both get, and nothing written.
NOT_FOUND = {"status": 404, "code": "data.record_not_found", "events": []}
INVALID_REFERENCE = {"status": 409, "code": "data.invalid_reference", "events": []}

# Each case's ``$X`` is the id (or value) under test.
PUT_BODY = {"title": "ALPHA took it"}
BY_ID = [
    Case("view by id", "GET", "/data/posts/$X", **NOT_FOUND),
    Case("view by id through /rest/v1", "GET", "/rest/v1/posts/$X", **NOT_FOUND),
    Case("update by id", "PATCH", "/data/posts/$X", body={"views": 5}, **NOT_FOUND),
    Case("replace by id", "PUT", "/data/posts/$X", body=PUT_BODY, **NOT_FOUND),
    Case("replace by id, representation", "PUT", "/data/posts/$X", body=PUT_BODY, headers=REPR, **NOT_FOUND),
    Case("replace by filter", "PUT", "/data/posts?id=eq.$X", body=PUT_BODY, **NOT_FOUND),
    Case("replace through /rest/v1", "PUT", "/rest/v1/posts?id=eq.$X", body=PUT_BODY, headers=REPR, **NOT_FOUND),
    Case("delete by id", "DELETE", "/data/posts/$X", **NOT_FOUND),
    Case("read by filter", "GET", "/data/posts?id=eq.$X", events=[]),
    Case("update by filter", "PATCH", "/data/posts?id=eq.$X", body={"views": 5}, headers=REPR, events=[]),
    Case("delete by filter", "DELETE", "/data/posts?id=eq.$X", headers=REPR, events=[]),
    Case("create a comment pointing at it", "POST", "/data/comments", body={"body": "ALPHA x", "post": "$X"},
         **INVALID_REFERENCE),
    Case("point a comment at it", "PATCH", "/data/comments/$ac", body={"post": "$X"}, **INVALID_REFERENCE),
    Case("replace a comment, pointing at it", "PUT", "/data/comments/$ac", body={"body": "ALPHA x", "post": "$X"},
         **INVALID_REFERENCE),
]  # fmt: skip
#: A unique value is unique within a tenant: B's title is as free to A as a new one.
BY_VALUE = [
    Case("insert with its unique value", "POST", "/data/posts", body={"title": "$X"}, status=201, events=[CREATED]),
    Case(
        "upsert on its unique value",
        "POST",
        "/data/posts?on_conflict=title",
        body={"title": "$X", "views": 7},
        headers=MERGE,
        status=201,
        events=[CREATED],
    ),
]


async def _send(world: World, case: Case, value: str) -> tuple[int, Any]:
    """The case sent by alice with ``value`` for ``$X`` (its expectations checked); its status and reply."""
    r = await run(world.client, world.prepare(case.filled({"X": value})), world.db)
    reply = r.json() if r.content else None
    if isinstance(reply, dict):
        reply.pop("request_id", None)
    return r.status_code, reply


async def _compare(world: World, cases: list[Case], foreign: str, fresh: str) -> list[str]:
    problems = []
    for case in cases:
        try:
            theirs, free = await _send(world, case, foreign), await _send(world, case, fresh)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        if theirs != free:
            problems.append(f"{case.name}: another tenant's {theirs} but a fresh one's {free}")
    return problems


async def test_another_tenants_id_answers_like_an_id_no_row_has(client: Any, db: Any) -> None:
    world = await build_world(client, db)
    b_before = await tenant_b_rows(world)
    problems = await _compare(world, BY_ID, world.values["b1"], new_id())
    # Each unique value once (the first insert takes it in tenant A): B's title, then a new title.
    problems += await _compare(world, BY_VALUE[:1], "BRAVO post 2", "ALPHA fresh 1")
    problems += await _compare(world, BY_VALUE[1:], "BRAVO post 1", "ALPHA fresh 2")
    assert not problems, "\n".join(problems)
    assert await tenant_b_rows(world) == b_before
    # Nothing was created with a client's id: PUT replaces, it never creates.
    assert await world.scalar("SELECT count(*) FROM posts WHERE title = $1", PUT_BODY["title"]) == 0
