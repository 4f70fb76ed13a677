"""Sign-in limits on a real server with two workers (checklist 6 and 36, issue 10).

The server runs with the embedded defaults (limits counted in apprun's
database, no Redis) behind a trusted proxy, so each attempt names its client
address with ``X-Forwarded-For``. Every attempt opens a fresh connection, so
either worker may serve it: a limit counted per process would let twice the
count through. Both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import PASSWORD, bearer, login, register, unique_email
from tests.support.live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.checklist(36)]

PER_CLIENT = 4  # AUTH_RATE_LIMIT_ACCOUNT
CEILING = 10  # AUTH_RATE_LIMIT_ACCOUNT_GLOBAL
WRONG = "not the password at all"
ATTACKER = "198.51.100.66"
OWNER = "203.0.113.10"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    env = {
        "DATABASE_URL": database_url,
        "HTTP_TRUSTED_PROXIES": "127.0.0.1",
        "AUTH_RATE_LIMIT_IP": "1000/60",
        "AUTH_RATE_LIMIT_ACCOUNT": f"{PER_CLIENT}/900",
        "AUTH_RATE_LIMIT_ACCOUNT_GLOBAL": f"{CEILING}/3600",
    }
    with LiveServer(tmp_path, env, workers=2) as live:
        yield live


async def _attempt(server: LiveServer, email: str, password: str, ip: str) -> httpx.Response:
    # A client of its own per attempt: a new connection, which either worker may accept.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/auth/login", json={"email": email, "password": password}, headers=_from(ip))


async def _statuses(server: LiveServer, email: str, attempts: list[tuple[str, str]]) -> list[int]:
    return [(await _attempt(server, email, password, ip)).status_code for ip, password in attempts]


def _from(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def _account(server: LiveServer) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        email: str = (await register(http))["user"]["email"]
    return email


async def test_the_limit_holds_across_workers(server: LiveServer) -> None:
    email = await _account(server)
    statuses = await _statuses(server, email, [(ATTACKER, WRONG)] * (PER_CLIENT + 6))
    assert statuses == [400] * PER_CLIENT + [429] * 6
    refused = await _attempt(server, email, PASSWORD, ATTACKER)
    assert refused.status_code == 429
    assert refused.json()["code"] == "auth.too_many_attempts"
    assert 0 < int(refused.headers["retry-after"]) <= 900


async def test_an_unknown_email_is_limited_the_same_way(server: LiveServer) -> None:
    statuses = await _statuses(server, unique_email("nobody"), [(ATTACKER, WRONG)] * (PER_CLIENT + 2))
    assert statuses == [400] * PER_CLIENT + [429] * 2


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(server: LiveServer) -> None:
    email = await _account(server)
    assert await _statuses(server, email, [(ATTACKER, WRONG)] * (PER_CLIENT + 3)) == [400] * PER_CLIENT + [429] * 3
    # The attacker's refused tries did not use up the account's ceiling either.
    owner = await _attempt(server, email, PASSWORD, OWNER)
    assert owner.status_code == 200, owner.text
    # Still locked for the attacker, right password or not.
    assert (await _attempt(server, email, PASSWORD, ATTACKER)).status_code == 429


@pytest.mark.checklist(6)
async def test_many_addresses_past_the_account_ceiling_lock_it_for_everyone(server: LiveServer) -> None:
    email = await _account(server)
    attackers = [f"198.51.100.{i}" for i in range(1, 5)]
    attempts = [(ip, WRONG) for ip in attackers for _ in range(PER_CLIENT)]
    statuses = await _statuses(server, email, attempts)
    assert statuses == [400] * CEILING + [429] * (len(attempts) - CEILING)
    owner = await _attempt(server, email, PASSWORD, OWNER)
    assert owner.status_code == 429
    assert owner.json()["code"] == "auth.too_many_attempts"
    assert 3000 < int(owner.headers["retry-after"]) <= 3600


async def test_the_right_password_resets_its_client_and_spends_nothing(server: LiveServer) -> None:
    email = await _account(server)
    # Mistakes, then the right password: the client's count starts over.
    attempts = [(OWNER, WRONG)] * (PER_CLIENT - 1) + [(OWNER, PASSWORD)] + [(OWNER, WRONG)] * (PER_CLIENT - 1)
    assert await _statuses(server, email, attempts) == [400] * (PER_CLIENT - 1) + [200] + [400] * (PER_CLIENT - 1)
    # Signing in more often than the ceiling never locks the account: successes give their attempt back.
    addresses = [f"203.0.113.{100 + i}" for i in range(CEILING + 2)]
    assert await _statuses(server, email, [(ip, PASSWORD) for ip in addresses]) == [200] * (CEILING + 2)
    # 2 * (PER_CLIENT - 1) failures are on the account's count; the rest of the ceiling is still there.
    left = CEILING - 2 * (PER_CLIENT - 1)
    others = [(f"198.51.100.{200 + i}", WRONG) for i in range(left + 1)]
    assert await _statuses(server, email, others) == [400] * left + [429]


async def test_wrong_current_passwords_count_like_sign_ins(server: LiveServer) -> None:
    email = await _account(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        tokens: dict[str, Any] = await login(http, email)

    async def change(current: str, ip: str) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = {"current_password": current, "new_password": "a brand new passphrase"}
            reply = await http.post("/auth/password", json=body, headers={**bearer(tokens), **_from(ip)})
        return reply.status_code

    # A stolen access token buys no more guesses than a sign-in form would.
    assert [await change(WRONG, ATTACKER) for _ in range(PER_CLIENT + 1)] == [400] * PER_CLIENT + [429]
    assert (await _attempt(server, email, PASSWORD, ATTACKER)).status_code == 429
    # The same account from elsewhere is not affected.
    assert (await _attempt(server, email, PASSWORD, OWNER)).status_code == 200
