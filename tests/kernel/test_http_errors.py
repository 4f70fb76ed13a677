"""Every framework error comes out as {code, message, details, hint, request_id}."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.scenarios import Case, case_ids, run

ERROR_KEYS = {"code", "message", "details", "hint", "request_id"}

CASES = [
    Case(
        "unknown route, English",
        "GET",
        "/no/such/route",
        status=404,
        json={"code": "http.not_found", "message": "Nothing was found at /no/such/route."},
    ),
    Case(
        "unknown route, Chinese, same code",
        "GET",
        "/no/such/route",
        headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"},
        status=404,
        json={"code": "http.not_found", "message": "在 /no/such/route 未找到任何内容。"},
    ),
    Case(
        "wrong method keeps the Allow header",
        "DELETE",
        "/.well-known/alive",
        status=405,
        json={"code": "http.method_not_allowed"},
        response_headers={"allow": None},
    ),
    Case(
        "validation error names the field",
        "POST",
        "/_test/echo",
        body={"a": "not-a-number"},
        status=400,
        json={"code": "request.invalid", "details": [{"source": "body"}]},
    ),
    Case(
        "malformed JSON body",
        "POST",
        "/_test/echo",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        status=400,
        json={"code": "request.malformed"},
        contains=["JSON is malformed"],
    ),
    Case(
        "declared body over the limit is refused before it is read",
        "POST",
        "/_test/echo",
        content=b"x" * (64 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        status=413,
        json={"code": "http.payload_too_large"},
    ),
    Case(
        "internal error: generic message, no internals",
        "GET",
        "/_test/boom",
        status=500,
        json={"code": "internal.error"},
        absent=["secret internals", "SELECT", "Traceback", "/srv/app.py", "Boom"],
    ),
    Case(
        "internal error in Chinese",
        "GET",
        "/_test/boom",
        headers={"Accept-Language": "zh-CN"},
        status=500,
        json={"code": "internal.error"},
        contains=["请求 ID"],
    ),
]


@pytest.fixture
def settings(make_settings: Any, tmp_path: Any) -> Any:
    # One dialect is enough here: nothing in these scenarios touches the database.
    return make_settings(database_url=f"sqlite:///{tmp_path / 'e.db'}", http_max_body_bytes=64 * 1024)


@pytest.mark.parametrize("case", CASES, ids=case_ids)
@pytest.mark.checklist(19)
async def test_error_shape(client: Any, case: Case) -> None:
    response = await run(client, case)
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["content-type"].startswith("application/json")


async def test_request_id_is_accepted_and_echoed(client: Any) -> None:
    r = await client.get("/no/such/route", headers={"X-Request-ID": "abc-123.XYZ"})
    assert r.headers["x-request-id"] == "abc-123.XYZ"
    assert r.json()["request_id"] == "abc-123.XYZ"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
async def test_malformed_request_id_is_replaced(client: Any, bad: str) -> None:
    r = await client.get("/.well-known/alive", headers={"X-Request-ID": bad.encode()})
    assert r.headers["x-request-id"] != bad
    assert len(r.headers["x-request-id"]) == 32


async def test_security_headers_on_api_responses(client: Any) -> None:
    r = await client.get("/.well-known/alive")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "strict-transport-security" not in r.headers  # dev mode over plain HTTP


async def test_docs_page_is_html_without_the_api_csp(client: Any) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "content-security-policy" not in r.headers
    # The page reads the served document, so it shows what modules add to it (collections).
    assert '"url": "/openapi.json"' in r.text


async def test_openapi_document(client: Any) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["info"]["title"] == "apprun"
    assert "/.well-known/health-check" in doc["paths"]


async def test_cors_preflight_allows_any_origin_by_default(client: Any) -> None:
    r = await client.options(
        "/api/v1/system/info",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] in ("*", "https://app.example")


async def test_gzip_for_large_bodies(client: Any) -> None:
    r = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"


def test_forked_workers_make_different_request_ids() -> None:
    # granian forks its workers from a process that imported the app: each must draw its own ids.
    from apprun.kernel.middleware import _request_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "".join(_request_id(None) for _ in range(3)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    ours = "".join(_request_id(None) for _ in range(3))
    assert len(child) == len(ours) == 96
    assert {child[i : i + 32] for i in range(0, 96, 32)}.isdisjoint({ours[i : i + 32] for i in range(0, 96, 32)})
    assert all(c in "0123456789abcdef" for c in child + ours)
