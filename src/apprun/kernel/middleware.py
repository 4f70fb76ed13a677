"""The kernel's ASGI middleware: what every HTTP request goes through.

One pass, wrapped around Litestar's router (so it also sees 404s and
framework errors), does what several middlewares would: request id (accepted
from ``X-Request-ID`` when well-formed, else generated, always echoed), the
`RequestContext` with the negotiated locale, the trace span, an early 413 for
a declared body over the limit, security headers, the Prometheus sample and
the JSON access-log line. It is written against raw ASGI because it runs on
every request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog
from litestar.enums import ScopeType
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from apprun.kernel import tracing
from apprun.kernel.context import SCOPE_KEY, RequestContext, reset_current, set_current
from apprun.kernel.errors import PayloadTooLarge
from apprun.kernel.logging import get_logger

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from apprun.kernel.runtime import Runtime

__all__ = ["KernelMiddleware", "client_ip"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_UNMATCHED = "<unmatched>"

_access = get_logger("apprun.access")


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


class KernelMiddleware:
    """Wraps the whole application; see the module docstring."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        settings = runtime.settings
        self.max_body = settings.http_max_body_bytes
        self.security_headers = _security_headers(not settings.is_dev)
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in settings.http_trusted_proxies]
        self.translator = runtime.translator
        self.metrics = runtime.metrics if settings.metrics_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = accept_language = content_length = traceparent = forwarded = None
        for name, value in scope["headers"]:
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
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = os.urandom(16).hex()
        peer = scope.get("client")
        ctx = RequestContext(
            request_id=request_id,
            locale=self.translator.negotiate(accept_language),
            client_ip=client_ip(peer[0] if peer else None, forwarded, self.trusted),
        )
        scope[SCOPE_KEY] = ctx  # type: ignore[literal-required]

        span = None
        otel_token = None
        if tracing.enabled():
            carrier = {"traceparent": traceparent} if traceparent else {}
            span = tracing.tracer().start_span(
                f"{scope['method']} {_UNMATCHED}",
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
            )
            otel_token = otel_context.attach(trace.set_span_in_context(span))
            ctx.trace_id = format(span.get_span_context().trace_id, "032x")
        elif traceparent and (m := _TRACEPARENT.match(traceparent)):
            ctx.trace_id = m.group(1)

        ctx_token = set_current(ctx)
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=ctx.trace_id)
        status = 500
        extra_headers = [(b"x-request-id", request_id.encode()), *self.security_headers]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                is_html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                headers.extend(extra_headers)
                if not is_html:
                    headers.append(_API_CSP)
                message["headers"] = headers
            await send(message)

        if self.metrics is not None:
            self.metrics.http_in_flight.inc()
        try:
            if content_length is not None and content_length.isdigit() and int(content_length) > self.max_body:
                await self._reject(PayloadTooLarge(params={"limit": self.max_body}), ctx, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            duration = time.perf_counter() - start
            route = scope.get("path_template") or _UNMATCHED
            method = scope["method"]
            if self.metrics is not None:
                self.metrics.http_in_flight.dec()
                self.metrics.observe_request(method, route, status, duration)
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                if otel_token is not None:
                    otel_context.detach(otel_token)
            _access.info(
                "http_request",
                method=method,
                route=route,
                path=scope["path"],
                status=status,
                duration_ms=round(duration * 1000, 3),
                tenant_id=ctx.tenant_id,
                user_id=ctx.user_id,
                client_ip=ctx.client_ip,
            )
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
            reset_current(ctx_token)

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
