"""Checklist items 9 and 33: a live event stream ends, saying why, when the credential that opened it stops holding.

The server re-checks each stream every ``EVENTS_STREAM_RECHECK_SECONDS``
(set small here); each case opens a stream, does what should end it, and
waits (with a deadline, never a fixed sleep) for the closing message
``event: apprun.stream.closed`` with its reason, then for the server to end
the response. A stream whose reader still holds goes on receiving events.
On SQLite and PostgreSQL, with the in-process bus and with NATS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apprun.events.streams import STREAM_CLOSED
from apprun.kernel.db import Database
from apprun.testing.engines import NatsServer
from tests.support.accounts import ADMIN_PASSWORD, PASSWORD, bearer, join, login, register, unique_email
from tests.support.live import LiveServer
from tests.support.sse import event_stream
from tests.support.test_app import prepare

pytestmark = [pytest.mark.slow, pytest.mark.checklist(9, 33)]

#: Seconds between a stream's checks in these tests; the closing message must come well within the deadline.
RECHECK = 0.2
DEADLINE = 20.0

Action = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    reason: str
    #: Makes a reader; returns the headers its stream is opened with and what ends it.
    arrange: Callable[[httpx.AsyncClient, dict[str, Any], Database], Awaitable[tuple[dict[str, str], Action]]]


async def _expect(reply: httpx.Response, status: int) -> None:
    assert reply.status_code == status, reply.text


async def _member(http: httpx.AsyncClient, db: Database, role: str = "member") -> tuple[dict[str, Any], dict[str, Any]]:
    """An owner, and a member of the owner's tenant signed in there."""
    owner = await register(http)
    person = await register(http)
    tenant = owner["tenant_id"]
    await join(http, db, owner, person, role)
    switched = await http.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(person))
    await _expect(switched, 200)
    member: dict[str, Any] = switched.json()
    return owner, member


async def _logout(http: httpx.AsyncClient, admin: dict[str, Any], db: Database) -> tuple[dict[str, str], Action]:
    user = await register(http)

    async def act() -> None:
        await _expect(await http.post("/auth/logout", headers=bearer(user)), 204)

    return bearer(user), act


async def _password_changed(
    http: httpx.AsyncClient, admin: dict[str, Any], db: Database
) -> tuple[dict[str, str], Action]:
    email = unique_email("pw")
    here = await register(http, email=email)
    elsewhere = await login(http, email)
    body = {"current_password": PASSWORD, "new_password": PASSWORD + " changed"}

    async def act() -> None:
        await _expect(await http.post("/auth/password", json=body, headers=bearer(here)), 204)

    return bearer(elsewhere), act


async def _removed(http: httpx.AsyncClient, admin: dict[str, Any], db: Database) -> tuple[dict[str, str], Action]:
    owner, member = await _member(http, db)
    path = f"/api/v1/tenants/{owner['tenant_id']}/members/{member['user']['id']}"

    async def act() -> None:
        await _expect(await http.delete(path, headers=bearer(owner)), 204)

    return bearer(member), act


async def _disabled(http: httpx.AsyncClient, admin: dict[str, Any], db: Database) -> tuple[dict[str, str], Action]:
    user = await register(http)

    async def act() -> None:
        reply = await http.patch(f"/api/v1/users/{user['user']['id']}", json={"disabled": True}, headers=bearer(admin))
        await _expect(reply, 200)

    return bearer(user), act


async def _tenant_disabled(
    http: httpx.AsyncClient, admin: dict[str, Any], db: Database
) -> tuple[dict[str, str], Action]:
    owner, member = await _member(http, db)

    async def act() -> None:
        reply = await http.patch(
            f"/api/v1/tenants/{owner['tenant_id']}", json={"disabled": True}, headers=bearer(admin)
        )
        await _expect(reply, 200)

    return bearer(member), act


async def _key_revoked(http: httpx.AsyncClient, admin: dict[str, Any], db: Database) -> tuple[dict[str, str], Action]:
    owner = await register(http)
    created = await http.post("/api/v1/api-keys", json={"name": "tail", "role": "viewer"}, headers=bearer(owner))
    await _expect(created, 201)
    key = created.json()

    async def act() -> None:
        await _expect(await http.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(owner)), 204)

    return {"apikey": key["key"]}, act


async def _lost_read_on_events(
    http: httpx.AsyncClient, admin: dict[str, Any], db: Database
) -> tuple[dict[str, str], Action]:
    """Still a member, but moved to a role without ``read`` on ``events``: the stream's own rule ends it."""
    owner, member = await _member(http, db)
    await _expect(await http.post("/api/v1/roles", json={"name": "writer"}, headers=bearer(owner)), 201)
    path = f"/api/v1/tenants/{owner['tenant_id']}/members/{member['user']['id']}"

    async def act() -> None:
        await _expect(await http.patch(path, json={"role": "writer"}, headers=bearer(owner)), 200)

    return bearer(member), act


CASES = [
    Case("logout", "auth.session_revoked", _logout),
    Case("password change signs the other sessions out", "auth.session_revoked", _password_changed),
    Case("removed from the tenant", "auth.membership_revoked", _removed),
    Case("user disabled by a platform admin", "auth.session_revoked", _disabled),
    Case("tenant deactivated by a platform admin", "auth.tenant_disabled", _tenant_disabled),
    Case("API key revoked", "auth.invalid_api_key", _key_revoked),
    Case("role without read on events", "auth.forbidden", _lost_read_on_events),
]


async def _run(http: httpx.AsyncClient, admin: dict[str, Any], db: Database, case: Case) -> str | None:
    """The case's problem, or None: the stream closed with the case's reason, then ended."""
    headers, act = await case.arrange(http, admin, db)
    async with event_stream(http, headers) as stream:
        await act()
        try:
            messages = await stream.until(STREAM_CLOSED, timeout=DEADLINE)
        except TimeoutError:
            return f"{case.name}: no {STREAM_CLOSED} within {DEADLINE:g} s"
        closed = messages[-1].json()
        if closed != {"reason": case.reason}:
            return f"{case.name}: closed with {closed}, expected reason {case.reason}"
        await stream.ended(timeout=DEADLINE)
    return None


async def _platform_admin(http: httpx.AsyncClient, db: Database) -> dict[str, Any]:
    email = unique_email("admin")
    tokens = await register(http, email=email, password=ADMIN_PASSWORD)
    async with db.transaction() as conn:
        await conn.execute("UPDATE apprun_users SET is_platform_admin = $1 WHERE id = $2", True, tokens["user"]["id"])
    return await login(http, email, ADMIN_PASSWORD)


@pytest.mark.parametrize("bus", ["memory", "nats"])
async def test_a_stream_ends_with_its_session_and_says_why(
    tmp_path: Path, database_url: str, make_settings: Any, bus: str
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "PUBSUB_BACKEND": bus,
        "EVENTS_STREAM_RECHECK_SECONDS": str(RECHECK),
        "AUTH_RATE_LIMIT_IP": "1000/60",
    }
    nats_server = None
    if bus == "nats":
        nats_server = NatsServer(tmp_path / "nats")
        nats_server.start()
        env["PUBSUB_NATS_URL"] = nats_server.url
    db = await prepare(make_settings(database_url=database_url))
    try:
        with LiveServer(tmp_path / "server", env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                admin = await _platform_admin(http, db)
                bystander = await register(http)
                async with event_stream(http, bearer(bystander)) as untouched:
                    problems = await asyncio.gather(*(_run(http, admin, db, case) for case in CASES))
                    # Many re-checks later, the stream of a reader who still holds goes on.
                    published = await http.post(
                        "/api/v1/events", json={"type": "app.still.here"}, headers=bearer(bystander)
                    )
                    await _expect(published, 202)
                    seen = await untouched.until("app.still.here", timeout=DEADLINE)
        assert STREAM_CLOSED not in [m.event for m in seen], seen
        assert [p for p in problems if p] == []
    finally:
        await db.close()
        if nats_server is not None:
            nats_server.stop()


async def test_a_credential_gone_between_the_checks_gives_its_own_reason() -> None:
    # The stream's recheck asks the session first, then RBAC. A key revoked in between passes the
    # first check and fails the second (its role is gone): the close reason is still the key's.
    from apprun.events.service import Events
    from apprun.kernel.context import RequestContext

    class Sessions:
        def __init__(self) -> None:
            self.answers = [None, "auth.invalid_api_key"]

        async def recheck(self, _ctx: RequestContext) -> str | None:
            return self.answers.pop(0)

    class Denying:
        async def authorize(self, _ctx: RequestContext, _action: str, _obj: str) -> Any:
            return type("Decision", (), {"allowed": False})()

    events = Events(None, None, Denying())  # type: ignore[arg-type]
    events.use(sessions=Sessions())
    ctx = RequestContext(request_id="r", locale="en", client_ip=None)
    assert await events._still_reads(ctx, ctx) == "auth.invalid_api_key"
    still_member = Sessions()
    still_member.answers = [None, None]
    events.use(sessions=still_member)
    assert await events._still_reads(ctx, ctx) == "auth.forbidden"  # the rule alone: the reader lost read
