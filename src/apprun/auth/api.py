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
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from apprun.auth.deps import AccountDep, AuthDep, TokenKeysDep, client
from apprun.kernel.http import CtxDep

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


class AuthController(Controller):
    path = "/auth"
    tags = ("auth",)

    @post("/register", summary="Create an account (and a personal tenant, unless invited)")
    async def register(
        self, request: Request[Any, Any, Any], ctx: CtxDep, auth: AuthDep, data: JSONBody[Registration]
    ) -> dict[str, Any]:
        caller = client(request, ctx)
        await auth.limit_ip(caller, "register")
        return await auth.register(
            email=data.email,
            password=data.password,
            name=data.name,
            invite_token=data.invite_token,
            client=caller,
            ctx=ctx,
        )

    @post("/login", status_code=HTTP_200_OK, summary="Sign in with email and password")
    async def login(
        self, request: Request[Any, Any, Any], ctx: CtxDep, auth: AuthDep, data: JSONBody[Credentials]
    ) -> dict[str, Any]:
        caller = client(request, ctx)
        await auth.limit_ip(caller, "login")
        return await auth.login(email=data.email, password=data.password, client=caller, ctx=ctx)

    @post("/refresh", status_code=HTTP_200_OK, summary="Trade a refresh token for new tokens (single use)")
    async def refresh(
        self, request: Request[Any, Any, Any], ctx: CtxDep, auth: AuthDep, data: JSONBody[RefreshBody]
    ) -> dict[str, Any]:
        caller = client(request, ctx)
        await auth.limit_ip(caller, "refresh")
        return await auth.refresh(refresh_token=data.refresh_token, client=caller, ctx=ctx)

    @post(
        "/logout", status_code=HTTP_204_NO_CONTENT, summary="End this session (scope=global: all; others: all but this)"
    )
    async def logout(self, request: Request[Any, Any, Any], ctx: CtxDep, auth: AuthDep) -> None:
        # `scope` is read by hand: Litestar reserves the name for the ASGI scope.
        await auth.logout(ctx, request.query_params.get("scope", "local"))

    @get("/me", summary="The signed-in user, active tenant and roles")
    async def me(self, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
        return await account.me(ctx)

    @patch("/me", summary="Change name, locale or data (other fields have flows of their own)")
    async def update_me(self, ctx: CtxDep, account: AccountDep, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        return await account.update_me(ctx, data)

    # The flows below take two services, which Litestar resolves in a task group (kernel/http.py,
    # provide_service): tens of microseconds on requests that hash a password or send mail.
    @post("/password", status_code=HTTP_204_NO_CONTENT, summary="Change password; other sessions are signed out")
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        auth: AuthDep,
        account: AccountDep,
        data: JSONBody[PasswordChange],
    ) -> None:
        await auth.limit_ip(client(request, ctx), "password")
        await account.change_password(ctx, data.current_password, data.new_password)

    @post("/recover", status_code=HTTP_202_ACCEPTED, summary="Mail a password-reset link (same answer for any email)")
    async def recover(
        self,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        auth: AuthDep,
        account: AccountDep,
        data: JSONBody[RecoverBody],
    ) -> dict[str, str]:
        await auth.limit_ip(client(request, ctx), "recover")
        await account.recover(ctx, data.email)
        return {"status": "accepted"}

    @post("/reset", status_code=HTTP_204_NO_CONTENT, summary="Set a new password with the mailed token")
    async def reset(
        self,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        auth: AuthDep,
        account: AccountDep,
        data: JSONBody[ResetBody],
    ) -> None:
        await auth.limit_ip(client(request, ctx), "reset")
        await account.reset(ctx, data.token, data.password)

    @post("/verify", status_code=HTTP_204_NO_CONTENT, summary="Confirm an email address with the mailed token")
    async def verify(
        self,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        auth: AuthDep,
        account: AccountDep,
        data: JSONBody[TokenBody],
    ) -> None:
        await auth.limit_ip(client(request, ctx), "verify")
        await account.verify(ctx, data.token)

    @post("/verify/resend", status_code=HTTP_202_ACCEPTED, summary="Mail the verification link again")
    async def resend(
        self, request: Request[Any, Any, Any], ctx: CtxDep, auth: AuthDep, account: AccountDep
    ) -> dict[str, str]:
        await auth.limit_ip(client(request, ctx), "resend")
        await account.resend_verification(ctx)
        return {"status": "accepted"}

    @post("/tenant", status_code=HTTP_200_OK, summary="Switch the active tenant; returns tokens for it")
    async def switch_tenant(self, ctx: CtxDep, auth: AuthDep, data: JSONBody[TenantSwitch]) -> dict[str, Any]:
        return await auth.switch_tenant(ctx, data.tenant_id)

    @get("/sessions", summary="The signed-in user's active sessions")
    async def sessions(self, ctx: CtxDep, auth: AuthDep) -> list[dict[str, Any]]:
        return await auth.list_sessions(ctx)

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Sign out one session")
    async def revoke_session(self, ctx: CtxDep, auth: AuthDep, session_id: FromPath[str]) -> None:
        await auth.revoke_session(ctx, session_id)


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
    async def accept(self, ctx: CtxDep, auth: AuthDep, data: JSONBody[TokenBody]) -> dict[str, Any]:
        return await auth.accept_invitation(ctx, data.token)


@get("/.well-known/jwks.json", tags=["auth"], summary="Public keys that verify apprun's access tokens")
async def jwks(token_keys: TokenKeysDep) -> Response[dict[str, Any]]:
    return Response(token_keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
