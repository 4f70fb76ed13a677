"""Races that need a real server: the in-process client sends one request at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import PASSWORD
from tests.support.live import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Any:
    # Two workers, so the requests really run side by side (and across processes).
    with LiveServer(tmp_path, {"DATABASE_URL": database_url}, workers=2) as live:
        yield live


@pytest.mark.checklist(5)
async def test_concurrent_refreshes_of_one_token_all_succeed_with_one_child(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        reg = await http.post("/auth/register", json={"email": "race@example.com", "password": PASSWORD})
        assert reg.status_code == 201, reg.text
        token = reg.json()["refresh_token"]
        replies = await asyncio.gather(*(http.post("/auth/refresh", json={"refresh_token": token}) for _ in range(6)))
        assert [r.status_code for r in replies] == [200] * 6, [r.text for r in replies]
        children = {r.json()["refresh_token"] for r in replies}
        assert len(children) == 1
        nxt = await http.post("/auth/refresh", json={"refresh_token": children.pop()})
        assert nxt.status_code == 200


async def test_concurrent_sign_ups_with_one_email_make_one_account(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        body = {"email": "twice@example.com", "password": PASSWORD}
        replies = await asyncio.gather(*(http.post("/auth/register", json=body) for _ in range(4)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [201, 409, 409, 409], [r.text for r in replies]
    assert all(r.json()["code"] == "auth.email_taken" for r in replies if r.status_code == 409)
