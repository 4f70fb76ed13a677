"""Small helpers every module's ``api.py`` uses."""

from __future__ import annotations

from typing import Any

from litestar import Request

from apprun.kernel.context import RequestContext, from_scope
from apprun.kernel.errors import InternalError

__all__ = ["ctx_of", "user_agent"]


def ctx_of(request: Request[Any, Any, Any]) -> RequestContext:
    """The request's context, built by the kernel middleware and the auth layer."""
    ctx = from_scope(request.scope)
    if ctx is None:  # pragma: no cover - the kernel middleware always sets it
        raise InternalError()
    return ctx


def user_agent(request: Request[Any, Any, Any]) -> str | None:
    value = request.headers.get("user-agent")
    return value[:400] if value else None
