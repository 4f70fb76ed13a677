"""HTTP for sign-up, sign-in, tokens, the user's own account and sessions.

Paths follow the seed architecture (``/auth/register``, ``/auth/login``,
``/auth/refresh``) and GoTrue's shapes where they overlap, so token replies
look like Supabase's: ``access_token``, ``token_type``, ``expires_in``,
``expires_at``, ``refresh_token``, ``user``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from apprun.auth.account import Account
from apprun.auth.service import Auth, Client
from apprun.kernel.http import ctx_of, user_agent

__all__ = ["AuthController", "InvitationsController", "jwks"]


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str


class Registration(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str
    name: str | None = None
    invite_token: str | None = None


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: str


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class RecoverBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str


class ResetBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    password: str


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str


class TenantSwitch(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: str


def _auth(state: State) -> Auth:
    service: Auth = state.auth
    return service


def _account(state: State) -> Account:
    service: Account = state.account
    return service


def _client(request: Request[Any, Any, Any]) -> Client:
    ctx = ctx_of(request)
    return Client(ip=ctx.client_ip, user_agent=user_agent(request), locale=ctx.locale)


class AuthController(Controller):
    path = "/auth"
    tags = ("auth",)

    @post("/register", summary="Create an account (and a personal tenant, unless invited)")
    async def register(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[Registration]
    ) -> dict[str, Any]:
        auth, client = _auth(state), _client(request)
        await auth.limit_ip(client, "register")
        return await auth.register(
            email=data.email,
            password=data.password,
            name=data.name,
            invite_token=data.invite_token,
            client=client,
            ctx=ctx_of(request),
        )

    @post("/login", status_code=HTTP_200_OK, summary="Sign in with email and password")
    async def login(self, request: Request[Any, Any, Any], state: State, data: JSONBody[Credentials]) -> dict[str, Any]:
        auth, client = _auth(state), _client(request)
        await auth.limit_ip(client, "login")
        return await auth.login(email=data.email, password=data.password, client=client, ctx=ctx_of(request))

    @post("/refresh", status_code=HTTP_200_OK, summary="Trade a refresh token for new tokens (single use)")
    async def refresh(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[RefreshBody]
    ) -> dict[str, Any]:
        auth, client = _auth(state), _client(request)
        await auth.limit_ip(client, "refresh")
        return await auth.refresh(refresh_token=data.refresh_token, client=client, ctx=ctx_of(request))

    @post(
        "/logout", status_code=HTTP_204_NO_CONTENT, summary="End this session (scope=global: all; others: all but this)"
    )
    async def logout(self, request: Request[Any, Any, Any], state: State) -> None:
        # `scope` is read by hand: Litestar reserves the name for the ASGI scope.
        await _auth(state).logout(ctx_of(request), request.query_params.get("scope", "local"))

    @get("/me", summary="The signed-in user, active tenant and roles")
    async def me(self, request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
        return await _account(state).me(ctx_of(request))

    @patch("/me", summary="Change name, locale or data (other fields have flows of their own)")
    async def update_me(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await _account(state).update_me(ctx_of(request), data)

    @post("/password", status_code=HTTP_204_NO_CONTENT, summary="Change password; other sessions are signed out")
    async def change_password(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[PasswordChange]
    ) -> None:
        await _auth(state).limit_ip(_client(request), "password")
        await _account(state).change_password(ctx_of(request), data.current_password, data.new_password)

    @post("/recover", status_code=HTTP_202_ACCEPTED, summary="Mail a password-reset link (same answer for any email)")
    async def recover(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[RecoverBody]
    ) -> dict[str, str]:
        await _auth(state).limit_ip(_client(request), "recover")
        await _account(state).recover(ctx_of(request), data.email)
        return {"status": "accepted"}

    @post("/reset", status_code=HTTP_204_NO_CONTENT, summary="Set a new password with the mailed token")
    async def reset(self, request: Request[Any, Any, Any], state: State, data: JSONBody[ResetBody]) -> None:
        await _auth(state).limit_ip(_client(request), "reset")
        await _account(state).reset(ctx_of(request), data.token, data.password)

    @post("/verify", status_code=HTTP_204_NO_CONTENT, summary="Confirm an email address with the mailed token")
    async def verify(self, request: Request[Any, Any, Any], state: State, data: JSONBody[TokenBody]) -> None:
        await _auth(state).limit_ip(_client(request), "verify")
        await _account(state).verify(ctx_of(request), data.token)

    @post("/verify/resend", status_code=HTTP_202_ACCEPTED, summary="Mail the verification link again")
    async def resend(self, request: Request[Any, Any, Any], state: State) -> dict[str, str]:
        await _auth(state).limit_ip(_client(request), "resend")
        await _account(state).resend_verification(ctx_of(request))
        return {"status": "accepted"}

    @post("/tenant", status_code=HTTP_200_OK, summary="Switch the active tenant; returns tokens for it")
    async def switch_tenant(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[TenantSwitch]
    ) -> dict[str, Any]:
        return await _auth(state).switch_tenant(ctx_of(request), data.tenant_id)

    @get("/sessions", summary="The signed-in user's active sessions")
    async def sessions(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        return await _auth(state).list_sessions(ctx_of(request))

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Sign out one session")
    async def revoke_session(self, request: Request[Any, Any, Any], state: State, session_id: FromPath[str]) -> None:
        await _auth(state).revoke_session(ctx_of(request), session_id)


class InvitationsController(Controller):
    path = "/api/v1/invitations"
    tags = ("tenants",)

    # Not counted against the per-IP auth budget: the caller is signed in, and a
    # 256-bit token is not guessable by retrying.
    @post(
        "/accept",
        status_code=HTTP_200_OK,
        summary="Accept an invitation to a tenant, signed in as the invited address; returns the tenant",
    )
    async def accept(self, request: Request[Any, Any, Any], state: State, data: JSONBody[TokenBody]) -> dict[str, Any]:
        return await _auth(state).accept_invitation(ctx_of(request), data.token)


@get("/.well-known/jwks.json", tags=["auth"], summary="Public keys that verify apprun's access tokens")
async def jwks(state: State) -> Response[dict[str, Any]]:
    return Response(state.token_keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
