"""One error family for every module: `ApiError`.

An error has an HTTP status, a stable machine code (``auth.invalid_credentials``,
``data.unknown_column`` …), a message looked up in the i18n catalog for the
request's locale, and optional ``details`` and ``hint``. On the wire it is
PostgREST's shape, so Supabase's clients understand it, plus the request id::

    {"code": "http.not_found", "message": "…", "details": null, "hint": null,
     "request_id": "…"}

Modules raise subclasses or `ApiError` itself with their own codes; the
kernel's exception handlers (`apprun.kernel.http_errors`) turn every
exception — apprun's, Litestar's, or an unexpected one — into this shape. The
cause of a 5xx goes to the log with the request id, never to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "ForeignKeyViolation",
    "InternalError",
    "InvalidValue",
    "NotFound",
    "NotNullViolation",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "StatementTimeout",
    "TooManyRequests",
    "Unauthorized",
    "UniqueViolation",
]


class ApiError(Exception):
    """An error a client is meant to see.

    ``code`` is stable and documented; ``message`` is resolved from the i18n
    catalog by code at response time (``params`` fill its placeholders), so
    the same error reads in English or Chinese with the same code.
    """

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "request.bad"

    def __init__(
        self,
        code: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        details: Any = None,
        hint: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.params = dict(params or {})
        self.details = details
        self.hint = hint
        if status is not None:
            self.status = status  # type: ignore[misc]  # per-instance override of the class default
        self.headers = dict(headers or {})
        super().__init__(self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r})"


class BadRequest(ApiError):
    status = 400
    default_code = "request.bad"


class Unauthorized(ApiError):
    """401; carries the RFC 6750 challenge unless the raiser gives a more precise one."""

    status = 401
    default_code = "auth.unauthorized"

    def __init__(self, code: str | None = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("WWW-Authenticate", 'Bearer realm="apprun"')
        super().__init__(code, headers=headers, **kwargs)


class Forbidden(ApiError):
    status = 403
    default_code = "auth.forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "request.not_found"


class Conflict(ApiError):
    status = 409
    default_code = "request.conflict"


class UniqueViolation(Conflict):
    """A unique constraint refused the row (both dialects raise this).

    ``constraint`` names what clashed as the database said it (a constraint
    name on PostgreSQL, ``table.column`` on SQLite); callers that expect a
    particular clash catch this and raise their own code.
    """

    default_code = "request.conflict"

    def __init__(self, constraint: str = "", **kwargs: Any) -> None:
        self.constraint = constraint
        super().__init__(**kwargs)


class ForeignKeyViolation(Conflict):
    """A row refers to a row that does not exist, or is still referred to."""

    default_code = "db.foreign_key_violation"


class NotNullViolation(BadRequest):
    """A required column got no value."""

    default_code = "db.not_null_violation"

    def __init__(self, column: str = "", **kwargs: Any) -> None:
        self.column = column
        super().__init__(**kwargs)


class InvalidValue(BadRequest):
    """The database refused a value (a malformed regular expression, an out-of-range number …)."""

    default_code = "db.invalid_value"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "http.payload_too_large"


class TooManyRequests(ApiError):
    status = 429
    default_code = "http.too_many_requests"


class InternalError(ApiError):
    status = 500
    default_code = "internal.error"


class ServiceUnavailable(ApiError):
    status = 503
    default_code = "service.unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached; the request may be retried later."""

    default_code = "db.unavailable"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(**kwargs)


class StatementTimeout(ApiError):
    """A query ran past ``DB_STATEMENT_TIMEOUT`` and was cancelled.

    500, as PostgREST answers SQLSTATE 57014: retrying the same runaway query
    would not help, so this is not a 503.
    """

    status = 500
    default_code = "db.statement_timeout"
