"""The fast path: hot requests served without the framework, exactly as the framework serves them.

Litestar's layers (its exception handling, CORS, router, middleware stack,
dependency injection, response classes) cost about a third of a data read's
CPU. A module can declare *fast routes* (`FastRoute`): request lines it
serves straight from the kernel middleware, before the framework, such as
the data API's ``GET /data/{collection}``. Whether the fast path takes a
request is decided from its method and path alone, before anything runs;
once taken, the request is finished there, errors included. Everything the
caller can observe is the same as on the framework path:

- the kernel middleware's own work is shared (request id, locale, trace
  span, security headers, metrics, the access-log line with the route's
  template);
- the modules' *request layers* (`RequestLayer`, auth's authentication) run
  in the same order as on the framework path, where `RequestLayers` runs
  them as the one middleware;
- the reply is encoded as Litestar's ``ASGIResponse`` encodes it (the
  route's headers, then ``content-type`` and ``content-length``), and a
  browser's ``Origin`` or a client's ``Accept-Encoding: gzip`` goes through
  Litestar's own CORS and compression wrappers, configured as the app's;
- errors are rendered by the kernel's one renderer (`render_error`): a
  layer's error inside CORS and outside compression, a route's inside both,
  as on the framework path (Litestar's app-level exception handler sits
  inside CORS; compression is part of the route's own stack).

The fast path is off when a module declares framework middleware (it could
not be skipped) or with ``HTTP_FAST_PATH=false``. ``tests/data/test_fast_path.py``
runs the data API's read scenarios through both paths and compares the
replies byte for byte.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.middleware._internal.cors import CORSMiddleware
from litestar.middleware.compression import CompressionMiddleware

from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.errors import BadRequest
from apprun.kernel.http_errors import decode_json_body, render_error

if TYPE_CHECKING:
    from litestar.config.compression import CompressionConfig
    from litestar.config.cors import CORSConfig
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

__all__ = [
    "FastPath",
    "FastReply",
    "FastRoute",
    "RequestLayer",
    "RequestLayers",
    "ScopeBody",
    "ScopeHeaders",
    "reply_messages",
    "shadowed_routes",
]

#: Statuses whose reply has no body, so no type and no length (as Litestar's ``ASGIResponse``).
_NO_BODY = frozenset({204, 304})
_PARAM = re.compile(r"\{[^}]*\}")

#: What a module does to every routed request before its handler: fill the request's context from its
#: headers (auth: who is calling), or raise an `ApiError`. It runs on both paths.
RequestLayer = Callable[["Scope", RequestContext], Awaitable[None]]


class FastReply(NamedTuple):
    """A fast route's reply, as a handler's ``Response`` would carry it."""

    body: bytes
    status: int = 200
    media_type: str = "application/json"
    #: The route's own headers (``Content-Range`` …), in order, as the handler would set them.
    headers: Mapping[str, str] | None = None


class FastRoute(ABC):
    """Request lines a module serves on the fast path (see the module docstring)."""

    @abstractmethod
    def templates(self) -> frozenset[str]:
        """The templates of the framework routes it serves (``/data/{collection}``).

        Another route of the application that one of its matches would take
        from the framework (a static ``/data/export`` beside
        ``/data/{collection}``) turns the fast path off (`shadowed_routes`).
        """

    @abstractmethod
    def match(self, method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
        """``(route template, path parameters)`` when this route serves ``method path``, else None.

        The template is the one the framework's router gives the same request
        (``/data/{collection:str}``): the access log and the metrics name the
        route by it. Returning None sends the request down the framework path,
        so a route matches only what it serves exactly as its handler would.
        """

    @abstractmethod
    async def serve(
        self, scope: HTTPScope, receive: Receive, ctx: RequestContext, params: tuple[str, ...]
    ) -> FastReply:
        """The reply; an `ApiError` (or any exception) becomes the error reply the handler's would.

        ``receive`` gives the request's body (read it with `ScopeBody`, as the framework would).
        """


def _encode(reply: FastReply) -> list[tuple[bytes, bytes]]:
    """The headers as Litestar's ``ASGIResponse`` encodes them (its own first, then type and length)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (reply.headers or {}).items()]
    if reply.status in _NO_BODY or reply.status < 200:
        return headers
    media = reply.media_type
    if not any(name == b"content-type" for name, _ in headers):
        typed = f"{media}; charset=utf-8" if media.startswith("text/") else media
        headers.append((b"content-type", typed.encode("latin-1")))
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(reply.body)).encode()))
    return headers


def reply_messages(reply: FastReply) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ASGI ``http.response.start`` and ``http.response.body`` messages of ``reply``."""
    return (
        {"type": "http.response.start", "status": reply.status, "headers": _encode(reply)},
        {"type": "http.response.body", "body": reply.body, "more_body": False},
    )


async def _send(reply: FastReply, send: Send) -> None:
    start, body = reply_messages(reply)
    await send(start)  # type: ignore[arg-type]
    await send(body)  # type: ignore[arg-type]


def _error(exc: Exception, scope: HTTPScope, ctx: RequestContext) -> FastReply:
    status, headers, body = render_error(exc, ctx, method=scope["method"], path=scope["path"])
    return FastReply(body, status, "application/json", headers)


def shadowed_routes(routes: Sequence[FastRoute], framework: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """The framework's routes (``(template, methods)``) that a fast route would serve in their place.

    A template's parameters are filled with a sample value; a route that is
    not one of the fast route's own and that it matches is shadowed. A
    template ending in ``/*`` is a mount (everything below it is the mount's):
    it is shadowed when it takes in a fast route's template or the fast route
    matches below it.
    """
    own = frozenset().union(*(route.templates() for route in routes))
    shadowed = []
    for template, methods in framework:
        if template in own:
            continue
        pattern = template
        if template.endswith("/*"):
            prefix = template[:-1]  # ".../"
            if any(mine.startswith(prefix) for mine in own):
                shadowed.append(template)
                continue
            pattern = prefix + "{rest}"
        sample = _PARAM.sub("x", pattern)
        if any(route.match(method, sample) for route in routes for method in methods):
            shadowed.append(template)
    return shadowed


class ScopeHeaders:
    """The request's headers as a read takes them (`HeaderView`): the first value of one, or all of them.

    ASGI servers give header names in lower case, as the kernel middleware reads them too.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, key: str, /) -> str | None:
        name = key.encode("latin-1")
        for header, value in self._raw:
            if header == name:
                return value.decode("latin-1")
        return None

    def getall(self, key: str, default: list[str], /) -> list[str]:
        name = key.encode("latin-1")
        return [value.decode("latin-1") for header, value in self._raw if header == name] or default


class ScopeBody:
    """A request's body read from ASGI ``receive`` as the framework's request reads it.

    `body` enforces ``HTTP_MAX_BODY_BYTES`` on the bytes received (Litestar's
    ``RequestEntityTooLarge``, a 413; a declared ``Content-Length`` over it was
    refused earlier by the kernel middleware), a client that leaves before the
    end is ``400 request.incomplete_body``, and `json` decodes with
    `decode_json_body`, as the kernel's ``JsonRequest`` does.
    """

    __slots__ = ("_body", "max_bytes", "max_depth", "receive")

    def __init__(self, receive: Receive, *, max_bytes: int, max_depth: int) -> None:
        self.receive = receive
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self._body: bytes | None = None

    async def body(self) -> bytes:
        if self._body is None:
            chunks: list[bytes] = []
            total = 0
            while True:
                event = await self.receive()
                if event["type"] == "http.request":
                    chunk = event.get("body", b"")
                    if chunk:
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise RequestEntityTooLarge
                        chunks.append(chunk)
                    if not event.get("more_body", False):
                        break
                elif event["type"] == "http.disconnect":
                    raise BadRequest("request.incomplete_body")
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        return decode_json_body(await self.body() or b"null", self.max_depth)


class RequestLayers:
    """The modules' request layers as the framework path's one middleware (for HTTP and WebSocket)."""

    def __init__(self, app: ASGIApp, layers: Sequence[RequestLayer]) -> None:
        self.app = app
        self.layers = tuple(layers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = from_scope(scope)
        if ctx is not None:
            for layer in self.layers:
                await layer(scope, ctx)
        await self.app(scope, receive, send)


class FastPath:
    """Finds the fast route of a request and serves it (see the module docstring)."""

    def __init__(
        self,
        routes: Sequence[FastRoute],
        layers: Sequence[RequestLayer],
        *,
        cors: CORSConfig | None,
        compression: CompressionConfig | None,
    ) -> None:
        self.routes = tuple(routes)
        self.layers = tuple(layers)
        #: Requests served (for tests: a comparison of both paths must see the fast one taken).
        self.served = 0
        # Litestar's own wrappers, configured as the app's: a browser's CORS headers and gzip are
        # added by the same code on both paths. They never call their ``app``.
        self._cors = CORSMiddleware(app=_never, config=cors) if cors is not None else None
        self._compression = CompressionMiddleware(app=_never, config=compression) if compression is not None else None
        self._wraps = self._cors is not None or self._compression is not None

    def match(self, scope: HTTPScope) -> tuple[FastRoute, str, tuple[str, ...]] | None:
        """The route serving this request, its template and path parameters; None for the framework path."""
        if scope.get("root_path"):
            return None
        method = scope["method"]
        path = scope["path"]
        for route in self.routes:
            found = route.match(method, path)
            if found is not None:
                return route, found[0], found[1]
        return None

    async def serve(
        self,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
        *,
        ctx: RequestContext,
        route: FastRoute,
        params: tuple[str, ...],
    ) -> None:
        """Run the request layers, then the route; errors rendered where the framework renders them."""
        self.served += 1
        origin, accept_encoding, has_cookie = _cors_and_encoding(scope) if self._wraps else (None, None, False)
        if self._cors is not None and origin:
            send = self._cors.send_wrapper(send=send, origin=origin, has_cookie=has_cookie)
        try:
            for layer in self.layers:
                await layer(scope, ctx)
        except Exception as exc:  # noqa: BLE001 - rendered as the framework renders it: inside CORS, outside gzip
            await _send(_error(exc, scope, ctx), send)
            return
        if self._compression is not None and accept_encoding:
            send = self._compressed(scope, send, accept_encoding)
        try:
            reply = await route.serve(scope, receive, ctx, params)
        except Exception as exc:  # noqa: BLE001 - rendered as the route's exception handler renders it
            reply = _error(exc, scope, ctx)
        await _send(reply, send)

    def _compressed(self, scope: HTTPScope, send: Send, accept_encoding: str) -> Send:
        """``send`` through Litestar's compression, as the route's middleware stack would choose it."""
        assert self._compression is not None  # noqa: S101 - the caller checked
        config = self._compression.config
        encoding = config.compression_facade.encoding
        if encoding in accept_encoding:
            return self._compression.create_compression_send_wrapper(
                send=send, compression_encoding=encoding, scope=scope
            )
        if config.gzip_fallback and "gzip" in accept_encoding:
            return self._compression.create_compression_send_wrapper(
                send=send, compression_encoding="gzip", scope=scope
            )
        return send


def _cors_and_encoding(scope: HTTPScope) -> tuple[str | None, str | None, bool]:
    """The request's ``Origin`` and ``Accept-Encoding`` (first values) and whether it sends a cookie."""
    origin = accept_encoding = None
    has_cookie = False
    for name, value in scope["headers"]:
        if name == b"origin":
            origin = origin if origin is not None else value.decode("latin-1")
        elif name == b"accept-encoding":
            accept_encoding = accept_encoding if accept_encoding is not None else value.decode("latin-1")
        elif name == b"cookie":
            has_cookie = True
    return origin, accept_encoding, has_cookie


async def _never(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001 # pragma: no cover - an ASGI app that is never called
    raise AssertionError("the fast path's CORS and compression wrappers never call their app")
