"""Hostile request bodies on every JSON route: a 400 with a stable code, never a 5xx (checklist item 34).

The routes come from the app's own ``/openapi.json`` (every operation with a
request body, the data API's routes for a defined collection included) plus
the handlers that read their body themselves and do not describe it there.
Each is sent every body of the tables below, anonymously, as a member and as
a platform admin (so authorization does not stop a request before its body
is read), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.kernel.errors import BadRequest
from apprun.kernel.http_errors import decode_json_body, json_nesting_exceeds
from tests.support.accounts import bearer, make_admin, register
from tests.support.schema import define
from tests.support.test_app import TEST_ROUTES

pytestmark = pytest.mark.checklist(34)

ERROR_KEYS = {"code", "message", "details", "hint", "request_id"}
#: Under /storage/v1 the error body also carries Supabase Storage's two keys, which its clients read
#: (docs/storage.md).
STORAGE_ERROR_KEYS = ERROR_KEYS | {"statusCode", "error"}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Body:
    name: str
    raw: bytes
    #: The code every route must answer once it reads the body; None: any 4xx, or a 2xx if ``acceptable``.
    code: str | None = None
    content_type: str = JSON
    #: Valid JSON some route may take as it is.
    acceptable: bool = False


_DEEP = 1000
UNDECODABLE = [
    Body("invalid UTF-8 in a string", b'{"email": "\xff@example.com", "password": "x"}', "request.malformed"),
    Body("invalid UTF-8 outside strings", b'{"email": 1}\xfe\xff', "request.malformed"),
    Body("arrays 1,000 deep", b"[" * _DEEP + b"]" * _DEEP, "request.too_deep"),
    Body("objects 1,000 deep", b'{"a":' * _DEEP + b"1" + b"}" * _DEEP, "request.too_deep"),
    Body("arrays 1,000 deep, never closed", b"[" * _DEEP, "request.too_deep"),
    # Closers inside a string first: a check that counts brackets without reading strings sees depth 1.
    Body(
        "depth behind closers in a string",
        b'["' + b"]" * _DEEP + b'",' + b"[" * _DEEP + b"]" * (_DEEP + 1),
        "request.too_deep",
    ),
    Body("truncated", b'{"email": "a@example.com", "pass', "request.malformed"),
    Body("a lone surrogate escape", b'{"email": "\\ud800", "password": "x"}', "request.malformed"),
    Body("a raw NUL byte", b'{"email": "a\x00b@example.com", "password": "x"}', "request.malformed"),
    Body("1e999999", b'{"email": 1e999999}', "request.malformed"),
    Body("a 5,000-digit integer", b'{"email": ' + b"7" * 5000 + b"}", "request.malformed"),
    Body("form data sent as JSON", b"email=a%40example.com&password=x", "request.malformed"),
    Body("binary", bytes(range(256)), "request.malformed"),
]
#: Deep, but within the default HTTP_MAX_JSON_DEPTH (64): never request.too_deep.
UNDER_LIMIT = Body("60 levels, under the limit", b'{"a":' * 60 + b"1" + b"}" * 60, acceptable=True)
WRONG_SHAPE = [
    Body("a number where an object is expected", b"42"),
    Body("a string", b'"text"'),
    Body("null", b"null"),
    Body("an array of numbers", b"[1, 2]"),
    Body("an empty body", b""),
    # Where a route reads this key at all, the last one wins.
    Body("duplicate keys", b'{"a": 1, "a": 2}', acceptable=True),
    Body("escaped NULs", b'{"email": "a\\u0000@example.com", "name": "\\u0000", "a": "\\u0000"}', acceptable=True),
    UNDER_LIMIT,
    Body("JSON sent as form data", b'{"a": 1}', content_type=FORM, acceptable=True),
]

NOTES = {
    "name": "notes",
    "fields": [{"name": "title", "type": "text"}],
    "rules": dict.fromkeys(("list", "view", "create", "update", "delete"), "authenticated"),
}
#: Handlers that read their body themselves; the OpenAPI document gives them no request body.
RAW_BODY_ROUTES = [("POST", "/api/v1/collections"), ("PUT", "/api/v1/collections/{name}")]
#: Where a caller is refused before the body is read, and with what status.
REFUSED_FIRST = {
    ("anonymous", "POST", "/api/v1/collections"): 401,
    ("anonymous", "PUT", "/api/v1/collections/{name}"): 401,
    ("member", "POST", "/api/v1/collections"): 403,
    ("member", "PUT", "/api/v1/collections/{name}"): 403,
}


async def _caller(client: Any, db: Any, kind: str) -> tuple[dict[str, str], dict[str, str]]:
    """The caller's headers and a plausible value for each path parameter."""
    admin = await make_admin(client, db)
    await define(client, admin, NOTES)
    tokens = admin if kind != "member" else await register(client)
    r = await client.post(
        "/data/notes", json={"title": "t"}, headers={**bearer(tokens), "Prefer": "return=representation"}
    )
    assert r.status_code == 201, r.text
    params = {
        "collection": "notes",
        "name": "notes",
        "id": r.json()[0]["id"],
        "tenant_id": tokens["tenant_id"],
        "user_id": tokens["user"]["id"],
    }
    return ({} if kind == "anonymous" else bearer(tokens)), params


async def _json_routes(client: Any) -> list[tuple[str, str]]:
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    routes = [
        (method.upper(), path)
        for path, operations in reply.json()["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    ]
    # The document must still list the routes this test exists for.
    for expected in [
        ("POST", "/auth/login"),
        ("POST", "/auth/register"),
        ("POST", "/data/notes"),
        ("PUT", "/data/notes/{id}"),
    ]:
        assert expected in routes, routes
    return routes + RAW_BODY_ROUTES


def _json(reply: Any) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _problem(kind: str, method: str, template: str, body: Body, reply: Any) -> str | None:
    """What is wrong with the reply to ``body``, or None."""
    status = reply.status_code
    if status >= 500:
        return "a server error"
    if status < 400:
        return None if body.acceptable else "accepted"
    error = _json(reply)
    keys = STORAGE_ERROR_KEYS if template.startswith("/storage/v1/") else ERROR_KEYS
    if not isinstance(error, dict) or set(error) != keys or error["request_id"] != reply.headers["x-request-id"]:
        return "not the error shape"
    refused_first = REFUSED_FIRST.get((kind, method, template))
    if body.code and status != refused_first and (status, error["code"]) != (400, body.code):
        return f"expected 400 {body.code}"
    if body is UNDER_LIMIT and error["code"] == "request.too_deep":
        return "refused under the limit"
    return None


@pytest.mark.parametrize("kind", ["anonymous", "member", "platform admin"])
async def test_hostile_bodies_on_every_json_route(client: Any, db: Any, kind: str) -> None:
    headers, params = await _caller(client, db, kind)
    problems: list[str] = []
    for method, template in await _json_routes(client):
        path = re.sub(
            r"\{(\w+)(?::\w+)?\}", lambda m: params.get(m.group(1), "01a2348a-0000-7000-8000-000000000000"), template
        )
        for body in UNDECODABLE + WRONG_SHAPE:
            reply = await client.request(
                method, path, content=body.raw, headers={**headers, "Content-Type": body.content_type}
            )
            problem = _problem(kind, method, template, body, reply)
            if problem:
                problems.append(
                    f"{kind} {method} {template} <- {body.name}: {problem}: {reply.status_code} {reply.text[:160]}"
                )
    assert not problems, "\n".join(problems)


async def test_the_depth_limit_is_a_setting(make_settings: Any, database_url: str) -> None:
    app: Litestar = create_app(
        make_settings(database_url=database_url, http_max_json_depth=3),
        extra_routes=TEST_ROUTES,
        configure_logs=False,
    )
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        deep = await client.post("/_test/echo", content=b'{"a":{"b":{"c":{"d":1}}}}', headers={"Content-Type": JSON})
        chinese = await client.post(
            "/_test/echo", content=b"[[[[]]]]", headers={"Content-Type": JSON, "Accept-Language": "zh-CN"}
        )
        within = await client.post("/_test/echo", content=b'{"a":{"b":{"c":1}}}', headers={"Content-Type": JSON})
    assert deep.status_code == 400, deep.text
    assert deep.json()["code"] == "request.too_deep"
    assert deep.json()["details"] == {"limit": 3}
    assert deep.json()["message"] == "The request body nests arrays and objects deeper than 3 levels."
    assert chinese.json()["message"] == "请求正文中数组和对象的嵌套超过 3 层。"
    # Three levels pass the depth check and reach the route's own validation (it wants integers).
    assert within.status_code == 400, within.text
    assert within.json()["code"] == "request.invalid"


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_TRICKY = ["[", "]", "{", "}", '"', "\\", '\\"', "\\\\", "]]}}", "[[{{", "\\u005d"]


def _random_value(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([None, True, 1, 2.5, "".join(rng.choices(_TRICKY, k=rng.randint(0, 4)))])
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {
        "".join(rng.choices(_TRICKY, k=2)) + str(i): _random_value(rng, depth - 1) for i in range(rng.randint(0, 3))
    }


def test_the_depth_check_agrees_with_the_real_depth() -> None:
    """Strings full of brackets, quotes and backslashes neither hide depth nor invent it."""
    rng = random.Random(34)
    for _ in range(3000):
        value = _random_value(rng, rng.randint(0, 9))
        body = msgspec.json.encode(value)
        for limit in range(10):
            assert json_nesting_exceeds(body, limit) is (_depth(value) > limit), (body, limit)


def test_a_decode_that_still_recurses_too_far_is_a_400() -> None:
    # Only a limit above what the stack holds lets msgspec recurse that far; the answer is still a 400.
    with pytest.raises(BadRequest) as caught:
        decode_json_body(b"[" * 100_000 + b"]" * 100_000, max_depth=1_000_000)
    assert caught.value.code == "request.too_deep"


def test_bodies_within_the_limit_decode_as_before() -> None:
    bulk = msgspec.json.encode([{"title": f"[{i}]", "tags": ["a", "b"], "n": i} for i in range(500)])
    assert decode_json_body(bulk, 64) == msgspec.json.decode(bulk)
    assert decode_json_body(b'{"a":"\\u0000","b":1}', 64) == {"a": "\x00", "b": 1}
    assert decode_json_body(b"[" * 64 + b"]" * 64, 64) is not None
