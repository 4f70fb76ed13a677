"""The kernel's ASGI middleware: what every HTTP request goes through.

One pass, wrapped around Litestar's router (so it also sees 404s and
framework errors), does what several middlewares would: request id (accepted
from ``X-Request-ID`` when well-formed, else generated, always echoed), the
`RequestContext` with the negotiated locale, the trace span, an early 413 for
a declared body over the limit, security headers, the Prometheus sample and
the JSON access-log line; then a module's fast route (``kernel/fastpath.py``)
or the framework. It is written against raw ASGI because it runs on every
request. `KernelMiddleware.__call__` is the list of those steps, in
order; each is a small function or method below.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import time
from collections.abc import Iterable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog
from litestar.enums import ScopeType
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from apprun.kernel import tracing
from apprun.kernel.context import SCOPE_KEY, RequestContext, reset_current, set_current
from apprun.kernel.errors import PayloadTooLarge
from apprun.kernel.ids import canonical_uuid
from apprun.kernel.logging import access_log

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
    from opentelemetry.context import Context

    from apprun.kernel.fastpath import FastPath
    from apprun.kernel.runtime import Runtime

__all__ = ["KernelMiddleware", "client_ip", "requested_tenant"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_UNMATCHED = "<unmatched>"


def _security_headers(prod: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if prod:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


# API responses never need to run or embed anything; HTML pages (Swagger UI,
# the console) set a policy of their own.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Iterable[Any]) -> str | None:
    """The client's address: the peer, or — only when the peer is a trusted
    proxy — the right-most untrusted hop of ``X-Forwarded-For``.

    Trusting the header from anyone would let a client pick its own address
    (and reset per-IP limits), so by default it is ignored.
    """
    nets = list(trusted)
    if peer is None or not forwarded_for or not nets:
        return peer

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in nets)

    if not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def requested_tenant(value: str | None) -> str | None:
    """``X-Tenant-Id`` as `RequestContext.requested_tenant` holds it: the tenant id, ``""`` when it is not a UUID.

    Not refused here: the header matters only to an anonymous caller of a
    ``public`` rule, so a stray one elsewhere is ignored, as it always was.
    """
    return (canonical_uuid(value.strip()) or "") if value else None


class _Headers(NamedTuple):
    """The request headers the middleware reads."""

    request_id: str | None
    accept_language: str | None
    content_length: bytes | None
    traceparent: str | None
    forwarded_for: str | None
    tenant: str | None


def _read_headers(raw: Iterable[tuple[bytes, bytes]]) -> _Headers:
    """The headers the middleware needs, in one pass over the raw list (it runs on every request)."""
    request_id = accept_language = content_length = traceparent = forwarded = tenant = None
    for name, value in raw:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")
        elif name == b"accept-language":
            accept_language = value.decode("latin-1")
        elif name == b"content-length":
            content_length = value
        elif name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
        elif name == b"x-tenant-id":
            tenant = value.decode("latin-1")
    return _Headers(request_id, accept_language, content_length, traceparent, forwarded, tenant)


#: Request ids: 128 bits from a generator seeded from the OS once per process (and again in each
#: forked worker), instead of a ``getrandom`` system call per request. An id names a request in the
#: logs; it is no secret, and it is echoed to the client anyway.
_ids = random.Random(os.urandom(32))  # noqa: S311 - unique, not secret
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def _request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` when well-formed (it ends up in logs), else a fresh one."""
    if given is None or not _REQUEST_ID.match(given):
        return f"{_ids.getrandbits(128):032x}"
    return given


class _ServerSpan:
    """The request's server span, attached as the current OpenTelemetry context until it ends."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[Context]) -> None:
        self.span = span
        self.token = token

    def end(self, method: str, route: str, status: int) -> None:
        # Named after the route only now: the router matches it after the span began.
        self.span.update_name(f"{method} {route}")
        self.span.set_attribute("http.route", route)
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()
        otel_context.detach(self.token)


def _start_span(scope: HTTPScope, traceparent: str | None, ctx: RequestContext) -> _ServerSpan | None:
    """The server span when tracing is on (continuing the caller's ``traceparent``); sets ``ctx.trace_id``.

    With tracing off, the caller's trace id is still kept for the logs.
    """
    if not tracing.enabled():
        if traceparent and (m := _TRACEPARENT.match(traceparent)):
            ctx.trace_id = m.group(1)
        return None
    carrier = {"traceparent": traceparent} if traceparent else {}
    span = tracing.tracer().start_span(
        f"{scope['method']} {_UNMATCHED}",
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    ctx.trace_id = format(span.get_span_context().trace_id, "032x")
    return _ServerSpan(span, token)


def _bind(ctx: RequestContext) -> Token[RequestContext | None]:
    """Make ``ctx`` the current context, and its ids part of every log line, while the request runs."""
    token = set_current(ctx)
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id, trace_id=ctx.trace_id)
    return token


def _unbind(token: Token[RequestContext | None]) -> None:
    structlog.contextvars.unbind_contextvars("request_id", "trace_id")
    reset_current(token)


class _Reply:
    """The ``send`` the application gets: notes the status and adds the kernel's response headers."""

    __slots__ = ("extra_headers", "send", "status")

    def __init__(self, send: Send, extra_headers: list[tuple[bytes, bytes]]) -> None:
        self.send = send
        self.extra_headers = extra_headers
        #: What the metrics and the access log say when no response was started.
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = list(message.get("headers", ()))
            is_html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
            headers.extend(self.extra_headers)
            if not is_html:
                headers.append(_API_CSP)
            message["headers"] = headers
        await self.send(message)


def _log_access(scope: HTTPScope, route: str, status: int, duration: float, ctx: RequestContext) -> None:
    """The JSON access-log line of the request."""
    access_log(ctx, scope["method"], route, scope["path"], status=status, duration_ms=round(duration * 1000, 3))


class KernelMiddleware:
    """Wraps the whole application; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        fast: FastPath | None = None,
        *,
        body_limits: Mapping[str, int | None] | None = None,
    ) -> None:
        self.app = app
        self.runtime = runtime
        #: The modules' fast routes (kernel/fastpath.py), tried before the framework.
        self.fast = fast
        settings = runtime.settings
        self.max_body = settings.http_max_body_bytes
        #: The modules' own limits by path prefix (`Module.body_limits`), longest prefix first.
        self.body_limits = sorted((body_limits or {}).items(), key=lambda item: -len(item[0]))
        self.security_headers = _security_headers(not settings.is_dev)
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in settings.http_trusted_proxies]
        self.translator = runtime.translator
        self.metrics = runtime.metrics if settings.metrics_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = _read_headers(scope["headers"])
        ctx = self._context(scope, headers)
        server_span = _start_span(scope, headers.traceparent, ctx)
        ctx_token = _bind(ctx)
        reply = _Reply(send, [(b"x-request-id", ctx.request_id.encode()), *self.security_headers])
        try:
            await self._serve(scope, receive, reply, headers.content_length, ctx)
        finally:
            duration = time.perf_counter() - start
            route = scope.get("path_template") or _UNMATCHED
            self._observe(scope["method"], route, reply.status, duration)
            if server_span is not None:
                server_span.end(scope["method"], route, reply.status)
            _log_access(scope, route, reply.status, duration, ctx)
            _unbind(ctx_token)

    def _context(self, scope: Scope, headers: _Headers) -> RequestContext:
        """The request's `RequestContext`, stored in the scope for the handlers."""
        peer = scope.get("client")
        ctx = RequestContext(
            request_id=_request_id(headers.request_id),
            locale=self.translator.negotiate(headers.accept_language),
            client_ip=client_ip(peer[0] if peer else None, headers.forwarded_for, self.trusted),
            requested_tenant=requested_tenant(headers.tenant),
        )
        scope[SCOPE_KEY] = ctx  # type: ignore[literal-required]
        return ctx

    async def _serve(
        self, scope: HTTPScope, receive: Receive, reply: _Reply, content_length: bytes | None, ctx: RequestContext
    ) -> None:
        """The application, or an early 413 for a declared body over the limit; counted as in flight meanwhile."""
        if self.metrics is not None:
            self.metrics.http_in_flight.inc()
        try:
            if (
                content_length is not None
                and content_length.isdigit()
                and (limit := self._body_limit(scope["path"])) is not None
                and int(content_length) > limit
            ):
                await self._reject(PayloadTooLarge(params={"limit": limit}), ctx, reply)
            elif self.fast is not None and (matched := self.fast.match(scope)) is not None:
                route, template, params = matched
                scope["path_template"] = template  # the access log's and the metrics' route, as the router names it
                await self.fast.serve(scope, receive, reply, ctx=ctx, route=route, params=params)
            else:
                await self.app(scope, receive, reply)
        finally:
            if self.metrics is not None:
                self.metrics.http_in_flight.dec()

    def _body_limit(self, path: str) -> int | None:
        """The largest declared body the kernel lets through to ``path``: a module's own, else HTTP_MAX_BODY_BYTES."""
        for prefix, limit in self.body_limits:
            if path.startswith(prefix):
                return limit
        return self.max_body

    def _observe(self, method: str, route: str, status: int, duration: float) -> None:
        """The Prometheus sample of the request."""
        if self.metrics is not None:
            self.metrics.observe_request(method, route, status, duration)

    async def _reject(self, error: PayloadTooLarge, ctx: RequestContext, send: Send) -> None:
        from apprun.kernel.http_errors import error_body

        body = error_body(error.code, self.translator.gettext(error.code, ctx.locale, error.params), ctx)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
