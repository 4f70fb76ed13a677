"""HTTP for social login: ``/auth/oauth/<provider>/authorize`` and ``/callback`` (the flow is in ``oauth.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from apprun.auth.deps import OAuthLoginsDep, client
from apprun.kernel.errors import BadRequest
from apprun.kernel.http import CtxDep

__all__ = ["OAuthController"]


class OAuthController(Controller):
    path = "/auth/oauth"
    tags = ("auth",)

    @get("/{provider:str}/authorize", summary="Start a social login (redirects to the provider)")
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        oauth_logins: OAuthLoginsDep,
        provider: FromPath[str],
        redirect_to: FromQuery[str | None] = None,
    ) -> Redirect:
        # Anonymous, and each call stores a state row: it shares the auth endpoints' per-IP budget.
        await oauth_logins.auth.limit_ip(client(request, ctx), "oauth_authorize")
        return Redirect(await oauth_logins.authorize_url(provider, redirect_to), status_code=302)

    @get("/{provider:str}/callback", summary="Where the provider sends the browser back")
    async def callback(
        self,
        *,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        oauth_logins: OAuthLoginsDep,
        provider: FromPath[str],
        code: FromQuery[str | None] = None,
        error: FromQuery[str | None] = None,
    ) -> Response[Any]:
        # `state` is the OAuth parameter; Litestar reserves the name for app state.
        oauth_state = request.query_params.get("state")
        if error or not code or not oauth_state:
            raise BadRequest("auth.oauth_exchange_failed", details={"error": error})
        caller = client(request, ctx)
        await oauth_logins.auth.limit_ip(caller, "oauth_callback")
        tokens, redirect_to = await oauth_logins.complete(provider, code, oauth_state, caller)
        if redirect_to:
            fragment = urlencode({k: v for k, v in tokens.items() if isinstance(v, str | int)})
            return Redirect(f"{redirect_to}#{fragment}", status_code=302)
        return Response(tokens)
