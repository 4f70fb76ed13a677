"""Every exception becomes an `ApiError`-shaped JSON body.

Litestar's own exceptions (unknown route, wrong method, validation, oversized
body …) are mapped to apprun codes; anything unexpected becomes
``internal.error`` with a generic localized message and the request id, while
the traceback goes to the log under the same request id.

Request bodies are read here too, because a body the server cannot read is an
error the client must get back as one: `decode_json_body` turns any
undecodable JSON (not UTF-8, truncated, not JSON, nested past
``HTTP_MAX_JSON_DEPTH``, numbers out of range) into ``400 request.malformed``
or ``400 request.too_deep``, never into a 500. `json_request_class` makes it
the decoder of Litestar's own ``data:`` parameters; handlers that read a body
themselves call ``await request.json()``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from itertools import accumulate
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Empty, ExceptionHandlersMap

from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.errors import ApiError, BadRequest
from apprun.kernel.i18n import translator
from apprun.kernel.logging import get_logger

__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "JsonRequest",
    "decode_json_body",
    "error_body",
    "exception_handlers",
    "json_nesting_exceeds",
    "json_request_class",
    "render_error",
]

_log = get_logger("apprun.errors")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

_STATUS_CODES: dict[int, str] = {
    400: "request.bad",
    401: "auth.unauthorized",
    403: "auth.forbidden",
    404: "http.not_found",
    405: "http.method_not_allowed",
    406: "http.not_acceptable",
    409: "request.conflict",
    413: "http.payload_too_large",
    415: "http.unsupported_media_type",
    429: "http.too_many_requests",
    503: "service.unavailable",
}


def error_body(
    code: str, message: str, ctx: RequestContext | None, details: Any = None, hint: str | None = None
) -> bytes:
    """The JSON error body (PostgREST's four keys, plus the request id)."""
    return _encoder.encode(
        {
            "code": code,
            "message": message,
            "details": details,
            "hint": hint,
            "request_id": ctx.request_id if ctx else None,
        }
    )


def _locale(request: Request[Any, Any, Any], ctx: RequestContext | None) -> str:
    if ctx is not None:
        return ctx.locale
    return translator().negotiate(request.headers.get("accept-language"))


def _parts(
    locale: str,
    ctx: RequestContext | None,
    *,
    code: str,
    params: dict[str, Any] | None = None,
    details: Any = None,
    hint: str | None = None,
) -> bytes:
    tr = translator()
    message = tr.gettext(code, locale, params)
    if hint is not None and tr.has(hint):
        hint = tr.gettext(hint, locale, params)
    return error_body(code, message, ctx, details, hint)


def _respond(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    params: dict[str, Any] | None = None,
    details: Any = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    ctx = from_scope(request.scope)
    body = _parts(_locale(request, ctx), ctx, code=code, params=params, details=details, hint=hint)
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def _api_error_parts(
    exc: ApiError, locale: str, ctx: RequestContext | None
) -> tuple[int, dict[str, str] | None, bytes]:
    if exc.status >= 500:
        cause = exc.__cause__
        _log.warning(
            "request_failed",
            code=exc.code,
            status=exc.status,
            cause=f"{type(cause).__name__}: {cause}" if cause else None,
        )
    body = _parts(locale, ctx, code=exc.code, params=exc.params, details=exc.details, hint=exc.hint)
    return exc.status, exc.headers, body


def _api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, ApiError):  # pragma: no cover - Litestar resolves handlers by type
        return _unexpected(request, exc)
    ctx = from_scope(request.scope)
    status, headers, body = _api_error_parts(exc, _locale(request, ctx), ctx)
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def render_error(
    exc: Exception, ctx: RequestContext, *, method: str, path: str
) -> tuple[int, dict[str, str] | None, bytes]:
    """``(status, headers, body)`` of the reply the exception handlers give ``exc`` (for the fast path).

    An `ApiError` as `_api_error` renders it, one of Litestar's
    ``HTTPException`` (``RequestEntityTooLarge`` from reading a body) as
    `_http_exception` does, anything else as `_unexpected` does (logged with
    its traceback, ``500 internal.error``).
    """
    if isinstance(exc, ApiError):
        return _api_error_parts(exc, ctx.locale, ctx)
    if isinstance(exc, HTTPException):
        return _http_exception_parts(exc, ctx.locale, ctx, path=path, method=method)
    _log.error("unhandled_exception", path=path, method=method, exc_info=exc)
    return 500, None, _parts(ctx.locale, ctx, code="internal.error")


def _http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, HTTPException):  # pragma: no cover - Litestar resolves handlers by type
        return _unexpected(request, exc)
    ctx = from_scope(request.scope)
    status, headers, body = _http_exception_parts(
        exc, _locale(request, ctx), ctx, path=request.url.path, method=request.method
    )
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def _http_exception_parts(
    exc: HTTPException, locale: str, ctx: RequestContext | None, *, path: str, method: str
) -> tuple[int, dict[str, str], bytes]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    details: Any = None
    params: dict[str, Any] = {"status": status}
    if isinstance(exc, ValidationException):
        code = "request.invalid"
        details = exc.extra if exc.extra else None
    elif status == 400 and type(exc) is ClientException:
        # Litestar's reason (e.g. "JSON is malformed: … (byte 1)") describes the
        # client's own input, so it is safe and useful to return.
        code = "request.malformed"
        details = exc.detail or None
    elif isinstance(exc, NotFoundException):
        code = "http.not_found"
        params["path"] = path
    elif isinstance(exc, MethodNotAllowedException):
        code = "http.method_not_allowed"
        params["method"] = method
    elif isinstance(exc, RequestEntityTooLarge):
        code = "http.payload_too_large"
    elif isinstance(exc, NotAuthorizedException):
        code = "auth.unauthorized"
    elif isinstance(exc, PermissionDeniedException):
        code = "auth.forbidden"
    elif isinstance(exc, TooManyRequestsException):
        code = "http.too_many_requests"
    else:
        code = _STATUS_CODES.get(status, "internal.error" if status >= 500 else "request.bad")
    if status >= 500:
        _log.error("framework_error", status=status, exc_info=exc)
    return status, headers, _parts(locale, ctx, code=code, params=params, details=details)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The one place a traceback is written: the log, with the request id
    # bound by the kernel middleware. The client gets the code and the id.
    _log.error("unhandled_exception", path=request.url.path, method=request.method, exc_info=exc)
    return _respond(request, status=500, code="internal.error")


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers to pass to Litestar (resolved by exception MRO)."""
    return {ApiError: _api_error, HTTPException: _http_exception, Exception: _unexpected}


# --- request bodies ---------------------------------------------------------------------------

#: ``HTTP_MAX_JSON_DEPTH``'s default: deeper than any body the API takes, far shallower than the stack.
DEFAULT_MAX_JSON_DEPTH = 64

# Brackets and quotes are all the depth check needs from a body; every other byte is dropped in C.
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _structure(body: bytes) -> bytes:
    """The brackets of ``body`` that stand outside its strings, in order.

    Escapes go first (a run of backslashes pairs up from its start, as a JSON
    lexer reads it), so every quote left opens or closes a string; then pairs
    of adjacent quotes, which enclose no bracket, go; only the few strings
    that hold a bracket are split out. A malformed body may be misread after
    its first error, where the decoder stops anyway.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = body.translate(None, _NOT_STRUCTURAL).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    return marks


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit``, decided without decoding it.

    Every step is a C loop over the bytes, never a Python one, because this
    runs on every JSON body: most hold too few brackets to be deep at all;
    the brackets of the rest lose their innermost pairs one level per pass,
    and only those still standing after ``limit`` passes are counted exactly.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    marks = _structure(body)
    if marks.count(b"[") + marks.count(b"{") <= limit:
        return False
    rest = marks
    for i in range(limit):
        # One kind of pair per pass: replace() does not rescan what it joins, so a pass peels one level at most.
        rest = rest.replace(b"[]" if i % 2 else b"{}", b"")
        if not rest:
            return False
    return max(accumulate(memoryview(marks.translate(_STEPS)).cast("b")), default=0) > limit


def decode_json_body(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """``body`` decoded as JSON, or a 400 that says why it cannot be.

    msgspec raises more than ``DecodeError``: ``UnicodeDecodeError`` for a
    string that is not UTF-8, and ``RecursionError`` once nesting reaches
    Python's recursion limit, so the depth is checked before decoding starts.
    """
    if json_nesting_exceeds(body, max_depth):
        raise BadRequest("request.too_deep", params={"limit": max_depth}, details={"limit": max_depth})
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        # The reason ("JSON is malformed: … (byte 7)", "Number out of range") describes the client's own input.
        raise BadRequest("request.malformed", details=str(exc)[:200]) from None
    except UnicodeDecodeError:
        raise BadRequest("request.malformed", details="JSON is malformed: a string is not valid UTF-8") from None
    except RecursionError:
        # Only if the stack was already deep, or the limit set above what the stack holds.
        raise BadRequest("request.too_deep", params={"limit": max_depth}, details={"limit": max_depth}) from None


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, with its JSON body read by `decode_json_body`.

    Litestar reads a ``data:`` parameter through ``Request.json()`` and lets
    msgspec's ``UnicodeDecodeError`` and ``RecursionError`` through as 500s.
    Handlers that read a body themselves call ``await request.json()`` too,
    so every route decodes JSON here, once per request. A body cut short
    is a 400 too (``request.incomplete_body``).
    """

    max_json_depth: ClassVar[int] = DEFAULT_MAX_JSON_DEPTH

    async def stream(self) -> AsyncGenerator[bytes, None]:
        # Litestar raises InternalServerException twice here: for a stream read twice (a bug,
        # left a 500) and for a body that stopped short (the client left, or sent a broken
        # chunk): the client's doing, so a 400 and no traceback.
        read_twice = self._body is Empty and not self.is_connected
        try:
            async for chunk in super().stream():
                yield chunk
        except InternalServerException:
            if read_twice:
                raise
            raise BadRequest("request.incomplete_body") from None

    async def json(self) -> Any:
        state = self._connection_state
        if state.json is Empty:
            # An empty body reads as null, as in Litestar; the handler's parameter type refuses it.
            state.json = decode_json_body(await self.body() or b"null", self.max_json_depth)
        return state.json


def json_request_class(max_json_depth: int) -> type[JsonRequest]:
    """The request class to give Litestar (``request_class=``), with ``HTTP_MAX_JSON_DEPTH``."""
    return type("JsonRequest", (JsonRequest,), {"max_json_depth": max_json_depth})
