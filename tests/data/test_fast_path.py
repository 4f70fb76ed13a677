"""The data API's reads and inserts give the same reply on the kernel's fast path as on the framework path.

Two apps on one database, one with ``HTTP_FAST_PATH`` on and one with it
off, get the same requests: every GET of the read scenarios
(`tests.data.test_query_api.SCENARIOS`, with their headers) and the
`EXTRA` table below (other callers, CORS, gzip, the record route, the
``/rest/v1`` alias, paths the fast path leaves to the framework). Each pair
of replies must be identical: status, every header in order (the request
id is sent, so it is the same), and the body's bytes. The fast app must
have served the requests it matches itself (`FastPath.served`), so the
comparison cannot pass by both apps taking the framework path.

Inserts change the database, so `WRITES` runs on two databases set up
alike, one app on each; ids and timestamps (different on each) are
replaced by a placeholder before the replies are compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, asgi, get
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.kernel.fastpath import FastPath
from apprun.kernel.middleware import KernelMiddleware
from tests.data.dataset import Labels, load
from tests.data.test_query_api import SCENARIOS, send_path
from tests.data.test_writes import ITEMS, REPR
from tests.support.accounts import bearer, make_admin_on, register
from tests.support.pg_databases import PgDatabases
from tests.support.schema import define


@dataclass(frozen=True)
class Extra:
    """One request of the extra table: a path (labels in braces) and headers (``{token}``: the user's)."""

    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    #: Whether the fast path serves it (else the framework does, on both apps).
    fast: bool = True


TOKEN = {"Authorization": "Bearer {token}"}
EXTRA = [
    Extra("anonymous list (rules: authenticated)", "/data/posts"),
    Extra("anonymous record", "/data/posts/{P1}"),
    Extra("bad token", "/data/posts", {"Authorization": "Bearer nope"}),
    Extra("bad scheme", "/data/posts", {"Authorization": "Basic abc"}),
    Extra("bad api key", "/data/posts", {"apikey": "ak_nope"}),
    Extra("list", "/data/posts?select=title&order=id", TOKEN),
    Extra("list via /rest/v1", "/rest/v1/posts?select=title&order=id", TOKEN),
    Extra("record", "/data/posts/{P1}", TOKEN),
    Extra("record via /rest/v1", "/rest/v1/posts/{P1}?select=title", TOKEN),
    Extra("record not found", "/data/posts/00000000-0000-0000-0000-000000000000", TOKEN),
    Extra("record, an id that is no id", "/data/posts/nope", TOKEN),
    Extra("record with filters", "/data/posts/{P1}?title=eq.x", TOKEN),
    Extra("unknown collection", "/data/nope", TOKEN),
    Extra("gzip, a long list", "/data/posts?order=id", {**TOKEN, "Accept-Encoding": "gzip"}),
    Extra("gzip, a short reply", "/data/posts/{P1}?select=id", {**TOKEN, "Accept-Encoding": "gzip, br"}),
    Extra("CORS", "/data/posts?select=title", {**TOKEN, "Origin": "https://app.example"}),
    Extra("CORS with a cookie", "/data/posts?select=id", {**TOKEN, "Origin": "https://x.example", "Cookie": "a=b"}),
    Extra("CORS on a refused token", "/data/posts", {"Authorization": "Bearer nope", "Origin": "https://x.example"}),
    Extra("CSV", "/data/posts?select=title&order=id", {**TOKEN, "Accept": "text/csv"}),
    Extra("count and range", "/data/posts?select=id", {**TOKEN, "Prefer": "count=exact", "Range": "0-1"}),
    Extra("range past the end", "/data/posts?select=id", {**TOKEN, "Prefer": "count=exact", "Range": "50-60"}),
    Extra("an unknown locale's error", "/data/nope", {**TOKEN, "Accept-Language": "zh-CN"}),
    Extra("a traceparent", "/data/posts?select=id", {**TOKEN, "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}),
    Extra("trailing slash", "/data/posts/", TOKEN, fast=False),
    Extra("three segments", "/data/posts/{P1}/more", TOKEN, fast=False),
    Extra("HEAD", "/data/posts?select=id", TOKEN, method="HEAD", fast=False),
    Extra("a PATCH", "/data/posts", TOKEN, method="PATCH", fast=False),
    Extra("a POST to a record", "/data/posts/{P1}", TOKEN, method="POST", fast=False),
    Extra("not the data API", "/nope", TOKEN, fast=False),
]


def fast_path_of(app: Litestar) -> FastPath | None:
    handler = app.asgi_handler
    assert isinstance(handler, KernelMiddleware)
    return handler.fast


@dataclass(frozen=True)
class Raw:
    """A reply as the client got it: status, headers in order, the body's bytes (gzip undone)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


async def raw(client: Any, method: str, path: str, headers: dict[str, str]) -> Raw:
    reply = await client.request(method, path, headers={"X-Request-ID": "fast-path-test", **headers})
    # httpx undoes the gzip: the gzip header carries the second it was written, which may differ.
    body = reply.content
    listed = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in reply.headers.raw]
    return Raw(reply.status_code, listed, body)


@asynccontextmanager
async def two_apps(make_settings: Any, database_url: str) -> AsyncIterator[tuple[Any, Any, Labels, FastPath]]:
    fast_app = create_app(make_settings(database_url=database_url), configure_logs=False)
    slow_app = create_app(make_settings(database_url=database_url, http_fast_path=False), configure_logs=False)
    fast_path = fast_path_of(fast_app)
    assert fast_path is not None
    assert fast_path_of(slow_app) is None
    async with (
        AsyncTestClient(app=fast_app, raise_server_exceptions=False) as fast,
        AsyncTestClient(app=slow_app, raise_server_exceptions=False) as slow,
    ):
        admin = await make_admin_on(fast, make_settings(database_url=database_url))
        yield fast, slow, await load(fast, admin), fast_path


def _fill(text: str, labels: Labels) -> str:
    for label, value in labels.by_label.items():
        text = text.replace("{" + label + "}", value)
    return text.replace("{token}", labels.token)


def _differs(name: str, on_fast: Raw, on_framework: Raw) -> str | None:
    if on_fast == on_framework:
        return None
    return f"[{name}]\n    fast:      {on_fast}\n    framework: {on_framework}"


async def test_fast_path_and_framework_give_identical_replies(make_settings: Any, database_url: str) -> None:
    async with two_apps(make_settings, database_url) as (fast, slow, labels, fast_path):
        differences = []
        expected_fast = 0
        for scenario in SCENARIOS:
            if scenario.method != "GET":
                continue
            path = send_path(labels, scenario)
            headers = {**bearer(labels.token), **scenario.request}
            before = fast_path.served
            pair = [await raw(client, "GET", path, headers) for client in (fast, slow)]
            assert fast_path.served == before + 1, f"[{scenario.name}] the fast path did not serve it"
            expected_fast += 1
            if problem := _differs(scenario.name, *pair):
                differences.append(problem)
        for extra in EXTRA:
            path = _fill(extra.path, labels)
            headers = {k: _fill(v, labels) for k, v in extra.headers.items()}
            before = fast_path.served
            pair = [await raw(client, extra.method, path, headers) for client in (fast, slow)]
            assert fast_path.served == before + (1 if extra.fast else 0), f"[{extra.name}] served by the wrong path"
            if problem := _differs(extra.name, *pair):
                differences.append(problem)
        assert expected_fast > 100
        assert not differences, f"{len(differences)} replies differ:\n\n" + "\n\n".join(differences)


async def test_the_access_log_and_metrics_name_the_route(make_settings: Any, database_url: str) -> None:
    """A request the fast path serves is counted under the route the framework's router names."""
    async with two_apps(make_settings, database_url) as (fast, _, labels, fast_path):
        before = fast_path.served
        reply = await fast.get(f"/data/posts/{labels.by_label['P1']}", headers=bearer(labels.token))
        assert reply.status_code == 200
        assert fast_path.served == before + 1
        metrics = (await fast.get("/metrics")).text
        assert 'route="/data/{collection}/{record_id}"' in metrics


@get("/data/export", sync_to_thread=False)
def _export() -> str:
    return "the application's own route"


async def test_a_route_the_fast_path_would_take_turns_it_off(make_settings: Any, tmp_path: Any) -> None:
    """An application route under /data/ that a fast route matches: the fast path is off, the route works."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'apprun.db'}")
    app = create_app(settings, extra_routes=[_export], configure_logs=False)
    assert fast_path_of(app) is None
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        assert (await client.get("/data/export")).text == "the application's own route"


@asgi("/rest", is_mount=True, copy_scope=True)
async def _mounted(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"the application's own mount"})


async def test_a_mount_the_fast_path_would_reach_into_turns_it_off(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'apprun.db'}")
    app = create_app(settings, extra_routes=[_mounted], configure_logs=False)
    assert fast_path_of(app) is None
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        assert (await client.get("/rest/anything")).text == "the application's own mount"


@pytest.mark.parametrize("path", ["/data/a/b/c", "/data//x", "/data/", "/rest/v1/", "/datax/y", "/rest/v2/x"])
def test_what_the_data_route_leaves_to_the_framework(path: str, make_settings: Any, tmp_path: Any) -> None:
    app = create_app(make_settings(database_url=f"sqlite:///{tmp_path / 'apprun.db'}"), configure_logs=False)
    fast_path = fast_path_of(app)
    assert fast_path is not None
    scope: Any = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    assert fast_path.match(scope) is None


# --- writes: POST /data/{collection} ------------------------------------------------------------
OBJECT = {"Accept": "application/vnd.pgrst.object+json"}
_NO_BODY: Any = object()


@dataclass(frozen=True)
class Write:
    """One POST: the path after the prefix, a JSON body or raw bytes, headers; with the user's token or not."""

    name: str
    path: str = "items"
    json: Any = _NO_BODY
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    token: bool = True
    prefix: str = "/data/"
    #: Send the body in chunks without a Content-Length (as a streaming client does).
    chunked: bool = False


WRITES = [
    Write("minimal", json={"sku": "a1", "label": "x"}),
    Write("representation", json={"sku": "a2"}, headers=REPR),
    Write("representation, select", "items?select=sku,qty", {"sku": "a3"}, REPR),
    Write("representation as an object", json={"sku": "a4"}, headers={**REPR, **OBJECT}),
    Write("representation as CSV", json={"sku": "a5", "label": "a,b"}, headers={**REPR, "Accept": "text/csv"}),
    Write("headers-only", json={"sku": "a6"}, headers={"Prefer": "return=headers-only"}),
    Write(
        "headers-only via /rest/v1", json={"sku": "a7"}, headers={"Prefer": "return=headers-only"}, prefix="/rest/v1/"
    ),
    Write(
        "bulk with a count",
        json=[{"sku": "b1"}, {"sku": "b2"}],
        headers={"Prefer": "return=representation,count=exact"},
    ),
    Write("columns", "items?columns=sku,label", [{"sku": "c1", "label": "l", "qty": 5}], REPR),
    Write(
        "columns, missing=default",
        "items?columns=sku,qty",
        [{"sku": "c2"}],
        {"Prefer": "return=representation,missing=default"},
    ),
    Write(
        "upsert, merge",
        "items?on_conflict=sku",
        {"sku": "a1", "label": "y"},
        {"Prefer": "return=representation,resolution=merge-duplicates"},
    ),
    Write(
        "upsert, ignore",
        "items?on_conflict=sku",
        {"sku": "a1", "label": "z"},
        {"Prefer": "return=representation,resolution=ignore-duplicates"},
    ),
    Write("unique violation", json={"sku": "a1"}),
    Write("too long", json={"sku": "v1", "label": "x" * 30}),
    Write("required missing", json={"label": "x"}),
    Write("below the minimum", json={"sku": "v2", "qty": -1}),
    Write("unknown field", json={"sku": "v3", "nope": 1}),
    Write("an object where one is expected, two sent", json=[{"sku": "d1"}, {"sku": "d2"}], headers={**REPR, **OBJECT}),
    Write("not acceptable", json={"sku": "d3"}, headers={**REPR, "Accept": "image/png"}),
    Write("form data", raw=b"sku=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Write("no body", raw=b"", headers={"Content-Type": "application/json"}),
    Write("malformed JSON", raw=b'{"sku": ', headers={"Content-Type": "application/json"}),
    Write("too deep", raw=b"[" * 100 + b"]" * 100, headers={"Content-Type": "application/json"}),
    Write("not UTF-8", raw=b'{"sku": "\xff"}', headers={"Content-Type": "application/json"}),
    Write("a JSON string", raw=b'"x"', headers={"Content-Type": "application/json"}),
    Write("chunked", json={"sku": "e1"}, headers=REPR, chunked=True),
    Write(
        "chunked, over the limit",
        raw=b'{"sku": "' + b"x" * 3000 + b'"}',
        headers={"Content-Type": "application/json"},
        chunked=True,
    ),
    Write(
        "declared over the limit", raw=b'{"sku": "' + b"x" * 3000 + b'"}', headers={"Content-Type": "application/json"}
    ),
    Write("anonymous", json={"sku": "f1"}, token=False),
    Write("bad token", json={"sku": "f2"}, headers={"Authorization": "Bearer nope"}, token=False),
    Write("unknown collection", "nope", {"a": 1}),
    Write("bad query", "items?select=(", {"sku": "f3"}),
    Write(
        "CORS and gzip on a long reply",
        json=[{"sku": f"g{i}", "label": "long enough"} for i in range(20)],
        headers={**REPR, "Origin": "https://x.example", "Accept-Encoding": "gzip"},
    ),
]

_GENERATED = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # ids
    r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"  # timestamps
)


def _normalized(reply: Raw) -> Raw:
    """Ids and timestamps (different on each database) as placeholders; lengths checked, then left out."""
    lengths = [v for k, v in reply.headers if k == "content-length"]
    if lengths and ("content-encoding", "gzip") not in reply.headers:
        assert lengths == [str(len(reply.body))]
    headers = [(k, _GENERATED.sub("<g>", v)) for k, v in reply.headers if k != "content-length"]
    return Raw(reply.status, headers, _GENERATED.sub("<g>", reply.body.decode("utf-8", "replace")).encode())


async def _post(client: Any, token: str, write: Write) -> Raw:
    headers = {"X-Request-ID": "fast-path-test", **({"Authorization": f"Bearer {token}"} if write.token else {})}
    headers.update(write.headers)
    content = write.raw if write.raw is not None else json.dumps(write.json).encode()
    if write.raw is None:
        headers.setdefault("Content-Type", "application/json")
    if write.chunked:
        data = content

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        reply = await client.post(write.prefix + write.path, content=chunks(), headers=headers)
    else:
        reply = await client.post(write.prefix + write.path, content=content, headers=headers)
    listed = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in reply.headers.raw]
    return _normalized(Raw(reply.status_code, listed, reply.content))


@asynccontextmanager
async def _writer(settings: Any) -> AsyncIterator[tuple[Any, str, Litestar]]:
    app = create_app(settings, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        admin = await make_admin_on(client, settings)
        await define(client, admin, ITEMS)
        yield client, (await register(client))["access_token"], app


async def test_inserts_give_identical_replies_on_both_paths(
    make_settings: Any, database_url: str, pg_databases: PgDatabases, tmp_path: Path
) -> None:
    """The same POSTs on two databases, one app with the fast path and one without: the same replies."""
    other = f"sqlite:///{tmp_path / 'other.db'}" if database_url.startswith("sqlite") else await pg_databases.create()
    fast_settings = make_settings(database_url=database_url, http_max_body_bytes=2048)
    slow_settings = make_settings(
        database_url=other, http_max_body_bytes=2048, http_fast_path=False, apprun_data_dir=tmp_path / "other"
    )
    async with _writer(fast_settings) as (fast, fast_token, app), _writer(slow_settings) as (slow, slow_token, _):
        fast_path = fast_path_of(app)
        assert fast_path is not None
        differences = []
        for write in WRITES:
            before = fast_path.served
            on_fast = await _post(fast, fast_token, write)
            served = fast_path.served - before
            on_framework = await _post(slow, slow_token, write)
            # A body declared over the limit is refused by the kernel middleware before any route.
            assert served == (0 if write.name == "declared over the limit" else 1), write.name
            if problem := _differs(write.name, on_fast, on_framework):
                differences.append(problem)
        assert not differences, f"{len(differences)} replies differ:\n\n" + "\n\n".join(differences)
