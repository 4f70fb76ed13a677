"""What a module declares about HTTP beyond its routes: its own body limits, the headers browsers may read, no gzip.

Storage's uploads are larger than ``HTTP_MAX_BODY_BYTES`` and bounded by the
module while it streams them (`Module.body_limits`); its downloads carry
``ETag`` and ``Content-Range`` a browser must be able to read
(`Module.cors_expose_headers`) and are served as stored, never gzipped, so
ranges and lengths stay true (``opt={SKIP_COMPRESSION: True}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
import pytest
from litestar import get
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send

from apprun.app import create_app
from apprun.kernel.config import ConfigError
from apprun.kernel.http import SKIP_COMPRESSION
from apprun.kernel.middleware import KernelMiddleware
from apprun.kernel.module import Module, Wiring
from apprun.kernel.modules import assemble
from apprun.kernel.runtime import Runtime
from apprun.modules import Settings


async def _count_body(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body and answers with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/elsewhere", 1024, 200),
        ("/elsewhere", 1025, 413),  # the kernel's HTTP_MAX_BODY_BYTES
        ("/big/file", 4096, 200),  # a module's own limit
        ("/big/file", 4097, 413),
        ("/big/small/file", 2049, 413),  # the longest prefix wins
        ("/free/file", 100_000, 200),  # no kernel limit: the route bounds it while streaming
    ],
)
async def test_a_module_bounds_its_own_paths_bodies(
    make_settings: Callable[..., Settings], tmp_path: Any, path: str, size: int, status: int
) -> None:
    runtime = Runtime(make_settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", http_max_body_bytes=1024))
    limits: dict[str, int | None] = {"/big/": 4096, "/big/small/": 2048, "/free/": None}
    app = KernelMiddleware(_count_body, runtime, body_limits=limits)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        reply = await client.post(path, content=b"x" * size)
    assert reply.status_code == status, reply.text
    if status == 413:
        assert reply.json()["code"] == "http.payload_too_large"
    else:
        assert reply.text == str(size)


def _declaring(name: str, limits: Mapping[str, int | None], exposed: tuple[str, ...]) -> type[Module]:
    class Declaring(Module):
        requires: ClassVar[tuple[str, ...]] = ()

        def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
            pass

        def body_limits(self) -> Mapping[str, int | None]:
            return limits

        def cors_expose_headers(self) -> tuple[str, ...]:
            return exposed

    Declaring.name = name
    return Declaring


def test_the_assembly_merges_declarations_and_refuses_a_prefix_declared_twice(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    runtime = Runtime(make_settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    a = _declaring("a", {"/a/": 10_000}, ("ETag", "Content-Range"))
    b = _declaring("b", {"/b/": None}, ("Content-Range", "Upload-Offset"))
    assembly = assemble((a, b), runtime)
    assert assembly.body_limits() == {"/a/": 10_000, "/b/": None}
    assert assembly.cors_expose_headers() == ["ETag", "Content-Range", "Upload-Offset"]
    clash = assemble((a, _declaring("c", {"/a/": 5}, ())), runtime)
    with pytest.raises(ConfigError, match="/a/"):
        clash.body_limits()


async def test_a_browser_may_read_the_kernel_and_the_modules_headers(client: Any) -> None:
    reply = await client.get("/api/v1/system/info", headers={"Origin": "https://app.example"})
    assert reply.status_code == 200
    exposed = [h.strip().lower() for h in reply.headers["access-control-expose-headers"].split(",")]
    # The kernel's own, then the data module's (PostgREST's count and a created row's address).
    assert {"x-request-id", "retry-after", "content-range", "location", "preference-applied"} <= set(exposed)


_TEXT = "apprun " * 1000


@get("/_test/gzipped", media_type="text/plain", sync_to_thread=False)
def _gzipped() -> str:
    return _TEXT


@get("/_test/as-stored", media_type="text/plain", sync_to_thread=False, opt={SKIP_COMPRESSION: True})
def _as_stored() -> str:
    return _TEXT


async def test_a_route_can_keep_the_app_wide_gzip_off(make_settings: Callable[..., Settings], tmp_path: Any) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'g.db'}")
    app = create_app(settings, extra_routes=[_gzipped, _as_stored], configure_logs=False)
    async with AsyncTestClient(app=app) as client:
        gzipped = await client.get("/_test/gzipped", headers={"Accept-Encoding": "gzip"})
        stored = await client.get("/_test/as-stored", headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in stored.headers
    assert stored.headers["content-length"] == str(len(_TEXT))
    assert gzipped.text == stored.text == _TEXT
