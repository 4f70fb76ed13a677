"""What every module's HTTP layer shares: the request context as a dependency, services as dependencies.

Handlers receive what they use as typed parameters, by Litestar's dependency
injection (``Provide``), never by name from ``app.state``::

    async def read_rows(ctx: CtxDep, data_service: DataServiceDep, ...) -> Response[str]: ...

``ctx`` is the kernel's one dependency (`kernel_dependencies`): the
`RequestContext` the kernel middleware put in the ASGI scope and the auth
layer completed. Each module declares its services in its ``deps.py``: a type
alias per parameter (``DataServiceDep = NamedDependency[DataService]``, which
mypy reads as ``DataService``) and the ``Provide`` of each, made with
`provide_service`, that its ``Module.dependencies()`` returns under the
parameter's name. The application registers the kernel's and every enabled
module's on the Litestar app (``kernel/modules.py`` refuses a name declared
twice).
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request, Response
from litestar.di import NamedDependency, Provide
from litestar.response.base import ASGIResponse
from litestar.types import Scope
from typing_extensions import override

from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.errors import InternalError

#: The key of a route handler's ``opt`` that keeps the app-wide gzip off its replies
#: (``opt={SKIP_COMPRESSION: True}``): bytes served as stored, for ``Range``, ``ETag`` and files already compressed.
SKIP_COMPRESSION = "skip_compression"

__all__ = [
    "CTX",
    "SKIP_COMPRESSION",
    "CtxDep",
    "TextResponse",
    "kernel_dependencies",
    "provide_service",
    "request_context",
    "user_agent",
]

T = TypeVar("T")

#: The parameter name under which handlers receive the request's context.
CTX = "ctx"
#: A handler's ``ctx: CtxDep`` is the request's `RequestContext`.
CtxDep = NamedDependency[RequestContext]


def request_context(scope: Scope) -> RequestContext:
    """The request's context, built by the kernel middleware and completed by the auth layer."""
    ctx = from_scope(scope)
    if ctx is None:  # pragma: no cover - the kernel middleware sets it on every HTTP request
        raise InternalError()
    return ctx


def kernel_dependencies() -> dict[str, Provide]:
    """The kernel's handler dependencies: the request context."""
    return {CTX: Provide(request_context, sync_to_thread=False)}


def provide_service(service: T) -> Provide:
    """The ``Provide`` of a service built once at startup, resolved after the request context.

    The value is constant (``use_cache``), so resolving it costs a lookup. It
    depends on ``ctx`` for the order alone: Litestar resolves the dependencies
    of a handler that do not depend on one another together, in an anyio task
    group (litestar#4563). Measured here on a bare Litestar app (2 busy cores,
    per request): a handler reading ``app.state`` 56 µs, ``ctx`` then one
    service chained like this 59 µs, the two as independent dependencies
    169 µs. Chained after the context, a handler that takes ``ctx`` and one
    service resolves them one after the other, without a task group; one that
    takes two services still pays for the group
    (tests/test_handler_dependencies.py lists those, none on a hot path).
    The parameter is typed ``Any``: Litestar converts a dependency's
    arguments to their declared types on every request, and the context
    needs no converting.
    """

    def dependency(ctx: NamedDependency[Any]) -> T:  # noqa: ARG001 - taken for the resolution order (see above)
        return service

    return Provide(dependency, use_cache=True, sync_to_thread=False)


def user_agent(request: Request[Any, Any, Any]) -> str | None:
    value = request.headers.get("user-agent")
    return value[:400] if value else None


class TextResponse(Response[str]):
    """A reply whose body the handler already has as text (the database built the JSON).

    Litestar's `Response` looks up a serializer and merges type encoders for
    every reply, which a body that is already text never needs; this one goes
    straight to the ASGI response, with the same status, headers and bytes.
    Layer-level headers and cookies (apprun sets none) are still merged.
    """

    __slots__ = ()

    def __init__(
        self,
        content: str,
        *,
        status_code: int = 200,
        media_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.content = content
        self.status_code = status_code
        self.media_type = media_type
        self.headers = headers or {}
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.response_type_encoders = {}

    @override
    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: Any = None,
        cookies: Any = None,
        encoded_headers: Any = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        **_: Any,
    ) -> ASGIResponse:
        return ASGIResponse(
            background=background,
            body=self.content.encode(),
            cookies=cookies,
            encoded_headers=encoded_headers,
            headers={**headers, **self.headers} if headers else self.headers,
            is_head_response=is_head_response,
            media_type=self.media_type,
            status_code=self.status_code,
        )
