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

from dataclasses import dataclass, field
from typing import Any

import pytest

from apprun.kernel.ids import new_id
from tests.data.test_security import World, build_world, tenant_b_rows
from tests.support.accounts import bearer

pytestmark = pytest.mark.checklist(10, 37)

REPR = {"Prefer": "return=representation"}
MERGE = {"Prefer": "resolution=merge-duplicates"}


@dataclass(frozen=True)
class Probe:
    """A request whose ``$X`` is replaced by the id (or value) under test."""

    name: str
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The answer both get (the status; the code too when it is an error).
    status: int = 404
    code: str | None = "data.record_not_found"


PUT_BODY = {"title": "ALPHA took it"}
BY_ID = [
    Probe("view by id", "GET", "/data/posts/$X"),
    Probe("view by id through /rest/v1", "GET", "/rest/v1/posts/$X"),
    Probe("update by id", "PATCH", "/data/posts/$X", {"views": 5}),
    Probe("replace by id", "PUT", "/data/posts/$X", PUT_BODY),
    Probe("replace by id, representation", "PUT", "/data/posts/$X", PUT_BODY, REPR),
    Probe("replace by filter", "PUT", "/data/posts?id=eq.$X", PUT_BODY),
    Probe("replace through /rest/v1", "PUT", "/rest/v1/posts?id=eq.$X", PUT_BODY, REPR),
    Probe("delete by id", "DELETE", "/data/posts/$X"),
    Probe("read by filter", "GET", "/data/posts?id=eq.$X", status=200, code=None),
    Probe("update by filter", "PATCH", "/data/posts?id=eq.$X", {"views": 5}, REPR, status=200, code=None),
    Probe("delete by filter", "DELETE", "/data/posts?id=eq.$X", headers=REPR, status=200, code=None),
    Probe(
        "create a comment pointing at it",
        "POST",
        "/data/comments",
        {"body": "ALPHA x", "post": "$X"},
        status=409,
        code="data.invalid_reference",
    ),
    Probe(
        "point a comment at it",
        "PATCH",
        "/data/comments/$ac",
        {"post": "$X"},
        status=409,
        code="data.invalid_reference",
    ),
    Probe(
        "replace a comment, pointing at it",
        "PUT",
        "/data/comments/$ac",
        {"body": "ALPHA x", "post": "$X"},
        status=409,
        code="data.invalid_reference",
    ),
]
#: A unique value is unique within a tenant: B's title is as free to A as a new one.
BY_VALUE = [
    Probe("insert with its unique value", "POST", "/data/posts", {"title": "$X"}, status=201, code=None),
    Probe(
        "upsert on its unique value",
        "POST",
        "/data/posts?on_conflict=title",
        {"title": "$X", "views": 7},
        MERGE,
        status=201,
        code=None,
    ),
]


async def _send(world: World, probe: Probe, value: str) -> tuple[int, Any]:
    def fill(text: str) -> str:
        return text.replace("$X", value).replace("$ac", world.values["ac"])

    body = {k: fill(v) if isinstance(v, str) else v for k, v in probe.body.items()} if probe.body else None
    r = await world.client.request(
        probe.method, fill(probe.path), json=body, headers={**bearer(world.tokens["alice"]), **probe.headers}
    )
    reply = r.json() if r.content else None
    if isinstance(reply, dict):
        reply.pop("request_id", None)
    return r.status_code, reply


async def _compare(world: World, probes: list[Probe], foreign: str, fresh: str) -> list[str]:
    problems = []
    for probe in probes:
        theirs, free = await _send(world, probe, foreign), await _send(world, probe, fresh)
        if theirs != free:
            problems.append(f"{probe.name}: another tenant's {theirs} but a fresh one's {free}")
        status, reply = theirs
        if status != probe.status or (probe.code is not None and (reply or {}).get("code") != probe.code):
            problems.append(f"{probe.name}: {status} {reply}, expected {probe.status} {probe.code or ''}")
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
