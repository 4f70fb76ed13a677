"""The request context: who is asking, for which tenant, in which language.

Every HTTP request resolves to one `RequestContext`, built by the kernel's
middleware (request id, trace id, locale) and completed by the auth layer
(user, tenant, roles, auth method). Handlers receive it explicitly and pass it
down to services; the context variable below exists only so log lines and
error handlers can find it without threading it through every call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SCOPE_KEY", "AuthMethod", "RequestContext", "current_context", "from_scope"]

#: Where the context lives in the ASGI scope.
SCOPE_KEY = "apprun.ctx"

AuthMethod = Literal["anonymous", "jwt", "api_key", "service", "oidc", "kratos"]


@dataclass(slots=True)
class RequestContext:
    """Identity and request metadata, handed from the HTTP layer to services."""

    request_id: str
    locale: str = "en"
    trace_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    #: The tenant an anonymous caller names with ``X-Tenant-Id`` (for the data API's ``public`` rules), as
    #: the kernel middleware read it once: a tenant id in lower case, ``""`` when the header holds no UUID
    #: (400 ``data.invalid_tenant_header`` where it would be used, so it is refused only there), None
    #: without the header.
    requested_tenant: str | None = None
    roles: tuple[str, ...] = ()
    auth_method: AuthMethod = "anonymous"
    session_id: str | None = None
    client_ip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("apprun_request_context", default=None)


def current_context() -> RequestContext | None:
    """The context of the request being served by this task, if any."""
    return _current.get()


def set_current(ctx: RequestContext | None) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def from_scope(scope: Any) -> RequestContext | None:
    """The context stored in an ASGI scope by the kernel middleware."""
    ctx = scope.get(SCOPE_KEY)
    return ctx if isinstance(ctx, RequestContext) else None
