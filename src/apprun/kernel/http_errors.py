"""Every exception becomes an `ApiError`-shaped JSON body.

Litestar's own exceptions (unknown route, wrong method, validation, oversized
body …) are mapped to apprun codes; anything unexpected becomes
``internal.error`` with a generic localized message and the request id, while
the traceback goes to the log under the same request id.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.errors import ApiError
from apprun.kernel.i18n import translator
from apprun.kernel.logging import get_logger

__all__ = ["error_body", "exception_handlers"]

_log = get_logger("apprun.errors")
_encoder = msgspec.json.Encoder()

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
    locale = _locale(request, ctx)
    tr = translator()
    message = tr.gettext(code, locale, params)
    if hint is not None and tr.has(hint):
        hint = tr.gettext(hint, locale, params)
    return Response(
        content=error_body(code, message, ctx, details, hint),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, ApiError):  # pragma: no cover - Litestar resolves handlers by type
        return _unexpected(request, exc)
    if exc.status >= 500:
        cause = exc.__cause__
        _log.warning(
            "request_failed",
            code=exc.code,
            status=exc.status,
            cause=f"{type(cause).__name__}: {cause}" if cause else None,
        )
    return _respond(
        request,
        status=exc.status,
        code=exc.code,
        params=exc.params,
        details=exc.details,
        hint=exc.hint,
        headers=exc.headers,
    )


def _http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, HTTPException):  # pragma: no cover - Litestar resolves handlers by type
        return _unexpected(request, exc)
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
        params["path"] = request.url.path
    elif isinstance(exc, MethodNotAllowedException):
        code = "http.method_not_allowed"
        params["method"] = request.method
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
    return _respond(request, status=status, code=code, params=params, details=details, headers=headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The one place a traceback is written: the log, with the request id
    # bound by the kernel middleware. The client gets the code and the id.
    _log.error("unhandled_exception", path=request.url.path, method=request.method, exc_info=exc)
    return _respond(request, status=500, code="internal.error")


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers to pass to Litestar (resolved by exception MRO)."""
    return {ApiError: _api_error, HTTPException: _http_exception, Exception: _unexpected}
