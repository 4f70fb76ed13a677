"""Refresh-token rotation, reuse detection and sessions (checklist 5, and the issue's flow)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from tests.support.accounts import PASSWORD, bearer, login, register


@pytest.mark.checklist(5)
async def test_register_login_me_refresh_replay_revokes_the_family(client: Any) -> None:
    reg = await register(client, name="Ada")
    email = reg["user"]["email"]
    assert reg["token_type"] == "bearer"
    assert reg["user"]["name"] == "Ada"
    assert "password_hash" not in reg["user"]

    signed_in = await login(client, email)
    me = (await client.get("/auth/me", headers=bearer(signed_in))).json()
    assert me["email"] == email
    assert me["tenant_id"] == signed_in["tenant_id"]
    assert me["roles"] == ["owner"]

    first = signed_in["refresh_token"]
    second = (await client.post("/auth/refresh", json={"refresh_token": first})).json()
    assert second["refresh_token"] != first
    assert (await client.get("/auth/me", headers=bearer(second))).status_code == 200
    third = (await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})).json()

    # The first token comes back after its child was used: a replay.
    replay = await client.post("/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert replay.json()["code"] == "auth.refresh_token_reused"
    # The whole family is revoked: the newest refresh token and its access token too.
    newest = await client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert newest.status_code == 401
    assert (await client.get("/auth/me", headers=bearer(third))).status_code == 401
    # Other sessions of the same user are untouched.
    assert (await client.get("/auth/me", headers=bearer(reg))).status_code == 200


@pytest.mark.checklist(5)
async def test_replay_after_the_grace_window_revokes(client: Any, db: Any) -> None:
    tokens = await register(client)
    first = tokens["refresh_token"]
    assert (await client.post("/auth/refresh", json={"refresh_token": first})).status_code == 200
    async with db.transaction() as conn:  # the refresh happened a minute ago
        await conn.execute(
            "UPDATE apprun_refresh_tokens SET used_at = $1 WHERE session_id = $2 AND used_at IS NOT NULL",
            dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            tokens["session_id"],
        )
    r = await client.post("/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 401
    assert r.json()["code"] == "auth.refresh_token_reused"
    async with db.read() as conn:
        reason = await conn.fetchval("SELECT revoked_reason FROM apprun_sessions WHERE id = $1", tokens["session_id"])
        audited = await conn.fetchval(
            "SELECT count(*) FROM apprun_audit_log WHERE action = 'token.reused' AND target = $1", tokens["session_id"]
        )
    assert reason == "token_reuse"
    assert audited == 1


@pytest.mark.checklist(5)
async def test_a_retry_within_the_grace_window_gets_the_same_child(client: Any) -> None:
    # The in-process client sends one request at a time: this is a quick retry.
    # Truly concurrent refreshes are in test_concurrency.py, against a real server.
    tokens = await register(client)
    a, b = await asyncio.gather(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
    )
    assert a.status_code == 200, a.text
    assert b.status_code == 200, b.text
    # Both callers hold the same next token, so neither is a branch to revoke later.
    assert a.json()["refresh_token"] == b.json()["refresh_token"]
    nxt = await client.post("/auth/refresh", json={"refresh_token": a.json()["refresh_token"]})
    assert nxt.status_code == 200
    assert (await client.get("/auth/me", headers=bearer(nxt.json()))).status_code == 200


async def test_unknown_and_malformed_refresh_tokens(client: Any) -> None:
    for token in ("", "x" * 500, "definitely-not-issued"):
        r = await client.post("/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401
        assert r.json()["code"] == "auth.invalid_refresh_token"
    r = await client.post("/auth/refresh", json={"refresh_token": "x", "user_id": "someone"})
    assert r.status_code == 400  # unknown fields are refused, not ignored


async def test_refresh_tokens_are_stored_hashed(client: Any, db: Any) -> None:
    tokens = await register(client)
    async with db.read() as conn:
        stored = [r["token_hash"] for r in await conn.fetch("SELECT token_hash FROM apprun_refresh_tokens")]
    assert tokens["refresh_token"] not in stored
    assert all(len(h) == 64 for h in stored)


async def test_expired_session_cannot_refresh(client: Any, db: Any) -> None:
    tokens = await register(client)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE apprun_sessions SET expires_at = $1 WHERE id = $2",
            dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
            tokens["session_id"],
        )
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    assert r.json()["code"] == "auth.session_expired"


async def test_sessions_are_listed_and_revocable(client: Any) -> None:
    reg = await register(client)
    email = reg["user"]["email"]
    other = await login(client, email)
    listed = (await client.get("/auth/sessions", headers=bearer(reg))).json()
    assert {s["id"] for s in listed} == {reg["session_id"], other["session_id"]}
    assert [s["current"] for s in listed if s["id"] == reg["session_id"]] == [True]
    assert all(s["user_agent"] for s in listed)
    assert (await client.delete(f"/auth/sessions/{other['session_id']}", headers=bearer(reg))).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(other))).status_code == 401
    assert len((await client.get("/auth/sessions", headers=bearer(reg))).json()) == 1


async def test_a_user_cannot_revoke_someone_elses_session(client: Any) -> None:
    alice = await register(client)
    mallory = await register(client)
    r = await client.delete(f"/auth/sessions/{alice['session_id']}", headers=bearer(mallory))
    assert r.status_code == 404
    assert (await client.get("/auth/me", headers=bearer(alice))).status_code == 200


async def test_logout_others_keeps_this_session(client: Any) -> None:
    reg = await register(client)
    other = await login(client, reg["user"]["email"])
    assert (await client.post("/auth/logout?scope=others", headers=bearer(reg))).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(reg))).status_code == 200
    assert (await client.get("/auth/me", headers=bearer(other))).status_code == 401
    assert (await client.post("/auth/logout?scope=everywhere", headers=bearer(reg))).status_code == 400


@pytest.mark.checklist(4)
async def test_password_change_signs_out_other_sessions(client: Any) -> None:
    reg = await register(client)
    other = await login(client, reg["user"]["email"])
    body = {"current_password": PASSWORD, "new_password": "an even better passphrase"}
    assert (await client.post("/auth/password", json=body, headers=bearer(reg))).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(reg))).status_code == 200
    assert (await client.get("/auth/me", headers=bearer(other))).status_code == 401
    assert (await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})).status_code == 401
    await login(client, reg["user"]["email"], "an even better passphrase")
