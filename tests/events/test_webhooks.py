"""Webhooks end to end, on SQLite and PostgreSQL, against a real HTTP receiver.

An event goes in through the API (``POST /api/v1/events``), through the
outbox, the relay, the bus and the ``apprun.webhooks`` consumer, and the
delivery worker POSTs it to `WebhookReceiver` on 127.0.0.1 (allowed with
``WEBHOOK_ALLOWLIST``, since loopback is refused otherwise). Signatures are
checked here with a verifier written from the Standard Webhooks
specification, not with apprun's own ``sign``. Nothing waits a fixed time:
every wait polls with a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apprun.app import create_app, wiring_of
from apprun.events import webhook_delivery
from apprun.events.webhooks import Webhooks
from apprun.kernel.db import Database, create_database
from apprun.kernel.times import to_datetime
from apprun.modules import Settings
from tests.support.accounts import bearer, join, register
from tests.support.polling import eventually
from tests.support.scenarios import Case, run, run_all
from tests.support.webhook_receiver import Hang, WebhookReceiver, verify

ORDER = "app.order.created"
SHIPPED = "app.order.shipped"
WEBHOOKS = "/api/v1/webhooks"
CONSUMER = "apprun.webhooks"
Client = AsyncTestClient[Litestar]


def test_the_verifier_accepts_the_specifications_test_vector_and_nothing_else() -> None:
    # The example of the Standard Webhooks specification (github.com/standard-webhooks).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    assert verify(secret, headers, body)
    assert not verify(secret, headers, b'{"test": 2432232315}')
    assert not verify(secret, {**headers, "webhook-timestamp": "1614265331"}, body)
    assert not verify("whsec_" + base64.b64encode(b"another key of 24 bytes!").decode(), headers, body)


# --- harness -------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    client: Client
    db: Database


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings, configure_logs=False)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
async def launch(
    make_settings: Callable[..., Settings], database_url: str, receiver: WebhookReceiver
) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    """Starts the app with webhook settings for this test (the receiver outlives it)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Env:
            values: dict[str, Any] = {
                "database_url": database_url,
                "webhook_allowlist": ["127.0.0.1"],
                "webhook_backoff_base": 0.3,
                "webhook_timeout": 5.0,
                **overrides,
            }
            settings = make_settings(**values)
            client = await stack.enter_async_context(serving(settings))
            db = create_database(settings)  # opened after the app migrated the schema
            await db.open()
            stack.push_async_callback(db.close)
            return Env(client, db)

        yield start


def refusal(  # noqa: PLR0917 - called as one row of a table
    name: str, method: str, path: str, headers: dict[str, str], body: Any, status: int, code: str
) -> Case:
    """A refused request: nothing may come of it, no event either."""
    return Case(name, method, path, headers=headers, body=body, status=status, code=code, events=[])


async def create_webhook(client: Client, tokens: dict[str, Any], url: str, **fields: Any) -> dict[str, Any]:
    r = await client.post(WEBHOOKS, json={"url": url, **fields}, headers=bearer(tokens))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def publish(client: Client, tokens: dict[str, Any], event_type: str = ORDER, data: Any = None) -> str:
    r = await client.post("/api/v1/events", json={"type": event_type, "data": data or {}}, headers=bearer(tokens))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def deliveries(client: Client, tokens: dict[str, Any], webhook_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{WEBHOOKS}/{webhook_id}/deliveries", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()
    return data


async def delivery_of(client: Client, tokens: dict[str, Any], webhook_id: str, event_id: str, status: str) -> Any:
    """Waits until the webhook's delivery of ``event_id`` has ``status``; returns it."""

    async def check() -> dict[str, Any] | None:
        found = [d for d in await deliveries(client, tokens, webhook_id) if d["event_id"] == event_id]
        return found[0] if found and found[0]["status"] == status else None

    return await eventually(check, f"delivery of {event_id} {status}")


async def delivery_rows(db: Database, event_id: str) -> list[str]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT webhook_id FROM apprun_webhook_deliveries WHERE event_id = $1", event_id)
    return sorted(r["webhook_id"] for r in rows)


async def count(db: Database, sql: str, *args: Any) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval(sql, *args))


async def consumed(db: Database, event_id: str) -> bool:
    sql = "SELECT count(*) FROM apprun_event_processed WHERE consumer = $1 AND event_id = $2"
    return await count(db, sql, CONSUMER, event_id) == 1


# --- signatures and the body ------------------------------------------------------


async def test_a_delivery_is_a_signed_cloudevent_and_rotation_changes_the_key(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch()
    client, owner = env.client, await register(env.client)
    hook = await create_webhook(client, owner, receiver.url("/signed"), event_types=[ORDER], description="orders")
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    # The secret is shown once: not in the webhook's view, not in the list.
    assert "secret" not in (await client.get(f"{WEBHOOKS}/{hook['id']}", headers=bearer(owner))).json()
    assert secret not in (await client.get(WEBHOOKS, headers=bearer(owner))).text

    event_id = await publish(client, owner, ORDER, {"order": 42, "total": "9.90"})
    [got] = await receiver.wait_for_event(event_id)
    assert got.path == "/signed"
    assert got.headers["content-type"] == "application/cloudevents+json"
    assert got.headers["webhook-id"] == event_id
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 300
    body = json.loads(got.body)
    assert {k: body.get(k) for k in ("specversion", "id", "type", "tenantid", "data")} == {
        "specversion": "1.0",
        "id": event_id,
        "type": ORDER,
        "tenantid": owner["tenant_id"],
        "data": {"order": 42, "total": "9.90"},
    }

    assert verify(secret, got.headers, got.body)
    assert not verify(secret, got.headers, got.body.replace(b"42", b"43"))
    assert not verify(secret, {**got.headers, "webhook-id": "msg_another"}, got.body)
    assert not verify("whsec_" + base64.b64encode(b"x" * 24).decode(), got.headers, got.body)

    rotated = await client.post(f"{WEBHOOKS}/{hook['id']}/rotate-secret", headers=bearer(owner))
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != secret
    second = await publish(client, owner, ORDER, {"order": 43})
    [again] = await receiver.wait_for_event(second)
    assert verify(new_secret, again.headers, again.body)
    assert not verify(secret, again.headers, again.body)


# --- retries ------------------------------------------------------------------------


async def test_failed_attempts_are_retried_with_growing_backoff_until_one_succeeds(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    base = 0.3
    env = await launch(webhook_backoff_base=base)
    client, owner = env.client, await register(env.client)
    hook = await create_webhook(client, owner, receiver.url("/flaky"), event_types=[ORDER])
    secret = hook["secret"]
    receiver.script(500, 500, 500)  # then the default, 200

    event_id = await publish(client, owner)
    await receiver.wait_for_event(event_id, 4)
    done = await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    got = receiver.of_event(event_id)
    assert len(got) == 4  # succeeded, so no fifth one ever
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert len({r.body for r in got}) == 1
    assert all(verify(secret, r.headers, r.body) for r in got)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got)]
    # Each retry waits at least its backoff (base, 2·base, 4·base): the gaps grow.
    for n, gap in enumerate(gaps):
        assert gap >= base * 2**n - 0.05, gaps
    assert gaps == sorted(gaps), gaps

    assert (done["event_type"], done["next_attempt_at"]) == (ORDER, None)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in done["attempts"]] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 500, "HTTP 500"),
        (4, 200, None),
    ]
    assert len(await deliveries(client, owner, hook["id"])) == 1
    assert await delivery_rows(env.db, event_id) == [hook["id"]]


async def test_an_unanswered_request_is_a_failed_attempt_not_a_hang(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch(webhook_timeout=0.5)
    client, owner = env.client, await register(env.client)
    hook = await create_webhook(client, owner, receiver.url("/slow"), event_types=[ORDER])
    receiver.script(Hang())  # held until the receiver closes; then 200s
    event_id = await publish(client, owner)
    # The second request can only come once the worker gave up on the first,
    # which the receiver is still holding open.
    got = await receiver.wait_for_event(event_id, 2)
    assert [r.answered for r in got][:2] == [None, 200]
    done = await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    # The held request is a failed attempt; the next answer succeeds. On a loaded machine an
    # answered request can still miss the 0.5 s deadline: then it is one more failed attempt.
    *failed, succeeded = done["attempts"]
    assert failed
    assert all(a["status_code"] is None and "0.5 s" in a["error"] for a in failed), failed
    assert (succeeded["status_code"], succeeded["error"]) == (200, None)


# --- who gets what --------------------------------------------------------------------


async def test_event_type_filter_other_tenants_and_inactive_webhooks(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch()
    client = env.client
    alice, bob = await register(client), await register(client)
    every = await create_webhook(client, alice, receiver.url("/a/all"))
    orders = await create_webhook(client, alice, receiver.url("/a/orders"), event_types=[ORDER])
    off = await create_webhook(client, alice, receiver.url("/a/off"), active=False)
    assert off["active"] is False
    bobs = await create_webhook(client, bob, receiver.url("/b/all"))

    created = await publish(client, alice, ORDER, {"n": 1})
    shipped = await publish(client, alice, SHIPPED, {"n": 2})
    await receiver.wait_for(
        lambda s: (
            {(r.path, r.headers["webhook-id"]) for r in s}
            >= {("/a/all", created), ("/a/all", shipped), ("/a/orders", created)}
        ),
        "alice's deliveries",
    )
    # The consumer records every webhook's delivery of an event in one
    # transaction: these rows are final, so nothing else can ever be sent.
    assert await delivery_rows(env.db, created) == sorted([every["id"], orders["id"]])
    assert await delivery_rows(env.db, shipped) == [every["id"]]
    seen = receiver.requests
    assert {json.loads(r.body)["type"] for r in seen if r.path == "/a/orders"} == {ORDER}
    assert [r for r in seen if r.path == "/a/off"] == []
    assert [r for r in seen if r.path == "/b/all" and json.loads(r.body)["tenantid"] == alice["tenant_id"]] == []
    sql = "SELECT count(*) FROM apprun_webhook_deliveries WHERE webhook_id = $1"
    assert await count(env.db, sql, off["id"]) == 0
    assert await count(env.db, sql + " AND tenant_id = $2", bobs["id"], alice["tenant_id"]) == 0


# --- server-side request forgery ----------------------------------------------------------

REFUSED = "events.webhook_address_refused"
INVALID = "events.invalid_webhook_url"
#: (name, URL or a non-string, expected code); {port} is the receiver's port.
SSRF_CASES: list[tuple[str, Any, str]] = [
    ("loopback receiver", "http://127.0.0.1:{port}/hook", REFUSED),
    ("a name that resolves to loopback", "http://localhost:{port}/hook", REFUSED),
    ("private network", "http://10.0.0.1/hook", REFUSED),
    ("cloud metadata", "http://169.254.169.254/latest", REFUSED),
    ("IPv6 loopback", "http://[::1]/hook", REFUSED),
    ("IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/hook", REFUSED),
    ("6to4 wrapping loopback", "http://[2002:7f00:1::1]/hook", REFUSED),
    ("shared address space (Alibaba metadata)", "http://100.100.100.200/latest", REFUSED),
    ("unspecified", "http://0.0.0.0:{port}/hook", REFUSED),
    ("not http", "ftp://example.com/hook", INVALID),
    ("a file", "file:///etc/passwd", INVALID),
    ("javascript", "javascript:alert(1)", INVALID),
    ("credentials in the URL", "http://user:pw@example.com/hook", INVALID),
    ("port zero", "http://example.com:0/hook", INVALID),
    ("no URL", "", INVALID),
    ("not a string", 12345, INVALID),
]


async def test_internal_targets_are_refused_without_an_allowlist(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch(webhook_allowlist=[])
    client, owner = env.client, await register(env.client)
    h = bearer(owner)
    for name, url, code in SSRF_CASES:
        body = {"url": url.format(port=receiver.port) if isinstance(url, str) else url}
        # A name's resolved address is not shown to the tenant (it would map the network).
        absent = ["::1", "127.0.0.1"] if "localhost" in str(url) else []
        case = Case(name, "POST", WEBHOOKS, headers=h, body=body, status=400, code=code, absent=absent, events=[])
        await run(client, case, env.db)
    assert (await client.get(WEBHOOKS, headers=h)).json() == []

    # A public target registers (inactive: it is never called), and cannot be moved inside.
    public = await create_webhook(client, owner, "http://1.1.1.1/hook", event_types=[ORDER], active=False)
    move = refusal("move inside", "PATCH", f"{WEBHOOKS}/{public['id']}", h, {"url": receiver.url()}, 400, REFUSED)
    await run(client, move, env.db)
    assert (await client.get(f"{WEBHOOKS}/{public['id']}", headers=h)).json()["url"] == "http://1.1.1.1/hook"
    assert receiver.requests == []


async def test_the_allowlist_admits_exactly_what_it_names(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch(webhook_allowlist=["127.0.0.1"])
    client, owner = env.client, await register(env.client)
    h = bearer(owner)
    hook = await create_webhook(client, owner, receiver.url("/allowed"))
    assert hook["url"] == receiver.url("/allowed")
    for name, url in [("IPv6 loopback", "http://[::1]/hook"), ("private network", "http://10.0.0.1/hook")]:
        await run(client, refusal(name, "POST", WEBHOOKS, h, {"url": url}, 400, REFUSED), env.db)


async def test_a_name_that_rebinds_to_loopback_after_registration_is_refused_at_send_time(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    """DNS rebinding: the name resolves to a public address when registered, to loopback when called."""
    env = await launch(webhook_allowlist=[])
    client, owner = env.client, await register(env.client)
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        # The first answer (registration) is public; every later one is the receiver's loopback.
        return ["93.184.216.34"] if len(asked) == 1 else ["127.0.0.1"]

    webhooks = wiring_of(client.app).get(Webhooks)
    webhooks.resolver = rebinding
    hook = await create_webhook(client, owner, f"http://hooks.rebind.test:{receiver.port}/in", event_types=[ORDER])
    event_id = await publish(client, owner, ORDER, {"order": 7})

    async def refused_attempt() -> dict[str, Any] | None:
        found = [d for d in await deliveries(client, owner, hook["id"]) if d["event_id"] == event_id]
        attempts = found[0]["attempts"] if found else []
        return found[0] if attempts else None

    delivery = await eventually(refused_attempt, "the first attempt of the delivery")
    assert delivery["attempts"][0]["status_code"] is None
    assert "events.webhook_address_refused" in delivery["attempts"][0]["error"], delivery
    assert asked[:2] == ["hooks.rebind.test", "hooks.rebind.test"]
    assert receiver.requests == []  # nothing reached the inside of the network


# --- abandon, auto-disable, switch back on ---------------------------------------------


async def test_abandoned_deliveries_switch_the_webhook_off_until_it_is_switched_on(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch(webhook_retry_period=1, webhook_disable_after=2)
    client, owner = env.client, await register(env.client)
    receiver.set_default(500)
    hook = await create_webhook(client, owner, receiver.url("/down"), event_types=[ORDER])
    # Another active webhook of the tenant, so the consumer handles every event of it
    # (and leaves its marker) even once the first is off.
    await create_webhook(client, owner, receiver.url("/other"), event_types=[SHIPPED])
    url = f"{WEBHOOKS}/{hook['id']}"

    first = await publish(client, owner)
    gone = await delivery_of(client, owner, hook["id"], first, "abandoned")
    assert gone["attempts"]
    assert {a["status_code"] for a in gone["attempts"]} == {500}
    still = (await client.get(url, headers=bearer(owner))).json()
    assert (still["active"], still["consecutive_failures"], still["disabled_at"]) == (True, 1, None)

    second = await publish(client, owner)
    await delivery_of(client, owner, hook["id"], second, "abandoned")
    off = (await client.get(url, headers=bearer(owner))).json()
    assert (off["active"], off["consecutive_failures"]) == (False, 2)
    assert off["disabled_at"] is not None
    assert off["disabled_reason"]

    third = await publish(client, owner)
    await eventually(lambda: consumed(env.db, third), "the consumer to see the third event")
    assert await delivery_rows(env.db, third) == []
    assert receiver.of_event(third) == []

    on = await client.patch(url, json={"active": True}, headers=bearer(owner))
    assert on.status_code == 200, on.text
    view = on.json()
    assert (view["active"], view["disabled_at"], view["disabled_reason"], view["consecutive_failures"]) == (
        True,
        None,
        None,
        0,
    )
    receiver.set_default(200)
    fourth = await publish(client, owner)
    await delivery_of(client, owner, hook["id"], fourth, "succeeded")
    assert [r.answered for r in receiver.of_event(fourth)] == [200]


async def test_a_webhook_switched_off_holds_its_pending_retries_back(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch(webhook_backoff_base=2.0)
    client, owner = env.client, await register(env.client)
    hook = await create_webhook(client, owner, receiver.url("/paused"), event_types=[ORDER])
    url = f"{WEBHOOKS}/{hook['id']}"
    receiver.script(503)
    event_id = await publish(client, owner)
    await receiver.wait_for_event(event_id)
    assert (await client.patch(url, json={"active": False}, headers=bearer(owner))).status_code == 200

    async def retry_overdue() -> bool:
        async with env.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT attempts, next_attempt_at FROM apprun_webhook_deliveries WHERE event_id = $1", event_id
            )
        if row is None or row["attempts"] != 1:
            return False
        due = to_datetime(row["next_attempt_at"])
        return due is not None and time.time() > due.timestamp() + 1.0  # a second past due: it had its chances

    await eventually(retry_overdue, "the retry to be overdue")
    assert len(receiver.of_event(event_id)) == 1
    assert (await delivery_of(client, owner, hook["id"], event_id, "pending"))["attempts"][0]["status_code"] == 503

    assert (await client.patch(url, json={"active": True}, headers=bearer(owner))).status_code == 200
    done = await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    assert [a["status_code"] for a in done["attempts"]] == [503, 200]


# --- redeliver -------------------------------------------------------------------------------


async def test_redeliver_sends_a_delivery_again_with_the_same_id(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch()
    client, owner = env.client, await register(env.client)
    hook = await create_webhook(client, owner, receiver.url("/one"), event_types=[ORDER])
    other = await create_webhook(client, owner, receiver.url("/two"), event_types=[ORDER])
    event_id = await publish(client, owner)
    done = await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    others = await delivery_of(client, owner, other["id"], event_id, "succeeded")
    assert len(done["attempts"]) == 1

    base = f"{WEBHOOKS}/{hook['id']}/deliveries"
    r = await client.post(f"{base}/{done['id']}/redeliver", headers=bearer(owner))
    assert r.status_code == 202, r.text
    assert r.json() == {"id": done["id"], "status": "pending"}
    sent = await receiver.wait_for_event(event_id, 2, "/one")

    async def grown() -> Any:
        [d] = [d for d in await deliveries(client, owner, hook["id"]) if d["id"] == done["id"]]
        return d if d["status"] == "succeeded" and len(d["attempts"]) == 2 else None

    again = await eventually(grown, "the second attempt in the log")
    assert [(a["attempt"], a["status_code"]) for a in again["attempts"]] == [(1, 200), (2, 200)]
    assert sent[0].body == sent[1].body
    assert all(verify(hook["secret"], x.headers, x.body) for x in sent)

    h = bearer(owner)
    for name, path, code in [
        ("unknown delivery", f"{base}/nope/redeliver", "events.delivery_not_found"),
        ("another webhook's delivery", f"{base}/{others['id']}/redeliver", "events.delivery_not_found"),
    ]:
        await run(client, refusal(name, "POST", path, h, None, 404, code), env.db)
    assert len(receiver.of_event(event_id, "/one")) == 2
    assert len(receiver.of_event(event_id, "/two")) == 1


# --- permissions -----------------------------------------------------------------------------


async def test_who_may_read_and_change_webhooks(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver
) -> None:
    env = await launch()
    client = env.client
    owner, stranger, person = await register(client), await register(client), await register(client)
    hook = await create_webhook(client, owner, receiver.url("/perm"), event_types=[ORDER])
    event_id = await publish(client, owner)
    delivery = await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    tenant = owner["tenant_id"]
    await join(client, env.db, owner, person, "viewer")
    viewer = (await client.post("/auth/tenant", json={"tenant_id": tenant}, headers=bearer(person))).json()
    # Built-in viewers hold nothing on `webhooks`; the tenant grants them reading.
    grant = await client.post(
        "/api/v1/policies", json={"role": "viewer", "object": "webhooks", "action": "read"}, headers=bearer(owner)
    )
    assert grant.status_code == 201, grant.text

    one = f"{WEBHOOKS}/{hook['id']}"
    #: (name, method, path, body) of everything that names the webhook.
    targets: list[tuple[str, str, str, Any]] = [
        ("get", "GET", one, None),
        ("deliveries", "GET", f"{one}/deliveries", None),
        ("update", "PATCH", one, {"description": "mine now"}),
        ("delete", "DELETE", one, None),
        ("rotate", "POST", f"{one}/rotate-secret", None),
        ("redeliver", "POST", f"{one}/deliveries/{delivery['id']}/redeliver", None),
    ]
    everything = [("list", "GET", WEBHOOKS, None), ("create", "POST", WEBHOOKS, {"url": receiver.url("/x")}), *targets]
    reads = {"list", "get", "deliveries"}
    as_viewer, as_stranger, as_owner = bearer(viewer), bearer(stranger), bearer(owner)
    cases: list[Case] = []
    for name, verb, path, body in everything:
        cases.append(Case(f"anonymous {name}", verb, path, body=body, status=401, events=[]))
        if name in reads:
            cases.append(Case(f"viewer {name}", verb, path, headers=as_viewer, absent=[hook["secret"]], events=[]))
        else:
            cases.append(refusal(f"viewer {name}", verb, path, as_viewer, body, 403, "auth.forbidden"))
    for name, verb, path, body in targets:
        missing = "events.webhook_not_found"
        cases.append(refusal(f"other tenant {name}", verb, path, as_stranger, body, 404, missing))
        unknown = path.replace(hook["id"], "01nosuchwebhook")
        cases.append(refusal(f"unknown id {name}", verb, unknown, as_owner, body, 404, missing))
    cases.append(Case("other tenant list", "GET", WEBHOOKS, headers=as_stranger, absent=[hook["id"]], events=[]))
    await run_all(client, cases, env.db)

    # Nothing changed: same secret, same description, still there, not resent.
    async with env.db.read() as conn:
        row = await conn.fetchrow("SELECT secret, description FROM apprun_webhooks WHERE id = $1", hook["id"])
        status = await conn.fetchval("SELECT status FROM apprun_webhook_deliveries WHERE id = $1", delivery["id"])
    assert row is not None
    assert (row["secret"], row["description"], status) == (hook["secret"], None, "succeeded")
    assert len(receiver.of_event(event_id)) == 1


async def test_crud_and_refused_bodies(launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver) -> None:
    env = await launch()
    client, owner = env.client, await register(env.client)
    h = bearer(owner)
    hook = await create_webhook(client, owner, receiver.url("/crud"), event_types=[SHIPPED, ORDER, ORDER])
    assert hook["event_types"] == [ORDER, SHIPPED]
    assert (hook["active"], hook["consecutive_failures"], hook["description"]) == (True, 0, None)
    one = f"{WEBHOOKS}/{hook['id']}"
    bad, read_only, url = "events.invalid_webhook", "request.read_only_fields", receiver.url()
    for name, verb, body, code in [
        ("bad event type", "POST", {"url": url, "event_types": ["NOPE"]}, bad),
        ("event types not a list", "POST", {"url": url, "event_types": ORDER}, bad),
        ("active not a boolean", "POST", {"url": url, "active": "false"}, bad),
        ("description not text", "POST", {"url": url, "description": {"a": 1}}, bad),
        ("patch: active not a boolean", "PATCH", {"active": 0}, bad),
        ("choose the secret", "POST", {"url": url, "secret": "whsec_bWluZQ=="}, read_only),
        ("patch: id", "PATCH", {"id": "x"}, read_only),
        ("patch: failures", "PATCH", {"consecutive_failures": 0}, read_only),
    ]:
        await run(client, refusal(name, verb, WEBHOOKS if verb == "POST" else one, h, body, 400, code), env.db)
    assert [w["id"] for w in (await client.get(WEBHOOKS, headers=h)).json()] == [hook["id"]]

    changed = await client.patch(one, json={"event_types": [], "description": "all of it"}, headers=h)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["event_types"], changed.json()["description"]) == ([], "all of it")
    assert (await client.delete(one, headers=h)).status_code == 204
    await run(client, Case("gone", "GET", one, headers=h, status=404, code="events.webhook_not_found"))


# --- exactly one delivery per webhook per event -------------------------------------------------


def _counter(metrics: str, consumer: str, outcome: str) -> float:
    wanted = f'apprun_events_delivered_total{{consumer="{consumer}",outcome="{outcome}"}}'
    for line in metrics.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("marker", ["kept", "pruned"])
async def test_an_event_seen_again_makes_no_second_delivery(
    make_settings: Callable[..., Settings], database_url: str, receiver: WebhookReceiver, marker: str
) -> None:
    """The relay publishes again after a crash between publishing and marking (and, in the
    "pruned" case, the consumer's de-duplication marker is gone too): still one delivery each."""
    settings = make_settings(database_url=database_url, webhook_allowlist=["127.0.0.1"])
    async with serving(settings) as client:
        owner = await register(client)
        hooks = [await create_webhook(client, owner, receiver.url(f"/{name}"), event_types=[ORDER]) for name in "xy"]
        event_id = await publish(client, owner)
        for hook in hooks:
            await delivery_of(client, owner, hook["id"], event_id, "succeeded")
    db = create_database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            await conn.execute("UPDATE apprun_event_outbox SET published_at = NULL WHERE id = $1", event_id)
            if marker == "pruned":
                await conn.execute(
                    "DELETE FROM apprun_event_processed WHERE consumer = $1 AND event_id = $2", CONSUMER, event_id
                )
        async with serving(settings) as client:

            async def seen_again() -> bool:
                text = (await client.get("/metrics")).text
                return _counter(text, CONSUMER, "duplicate" if marker == "kept" else "ok") >= 1

            await eventually(seen_again, "the consumer to see the event again")
            assert await delivery_rows(db, event_id) == sorted(h["id"] for h in hooks)
            for hook in hooks:
                [only] = await deliveries(client, owner, hook["id"])
                assert (only["event_id"], only["status"], len(only["attempts"])) == (event_id, "succeeded", 1)
        assert sorted(r.path for r in receiver.of_event(event_id)) == ["/x", "/y"]
    finally:
        await db.close()


async def test_a_webhook_made_after_its_tenant_had_none_gets_the_next_event_at_once(
    launch: Callable[..., Awaitable[Env]], receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer keeps, per tenant, whether it has an active webhook; a change made through this
    process is seen by the very next event, however long the answer it kept would still be good for."""
    monkeypatch.setattr(webhook_delivery, "ACTIVE_TTL", 3600.0)
    env = await launch()
    client, owner = env.client, await register(env.client)
    h = bearer(owner)

    async def all_handled() -> bool:
        # Every event the outbox holds has been through the consumer: skipped, or made deliveries.
        text = (await client.get("/metrics")).text
        handled = _counter(text, CONSUMER, "skipped") + _counter(text, CONSUMER, "ok")
        return handled >= await count(env.db, "SELECT count(*) FROM apprun_event_outbox")

    unseen = await publish(client, owner)
    await eventually(all_handled, "the event with no webhook to go to, skipped")
    hook = await create_webhook(client, owner, receiver.url("/late"))
    seen = await publish(client, owner)
    await delivery_of(client, owner, hook["id"], seen, "succeeded")
    # Switched off and on again: each change is seen at once too.
    assert (await client.patch(f"{WEBHOOKS}/{hook['id']}", json={"active": False}, headers=h)).status_code == 200
    held = await publish(client, owner)
    await eventually(all_handled, "the event for a switched-off webhook, skipped")
    assert (await client.patch(f"{WEBHOOKS}/{hook['id']}", json={"active": True}, headers=h)).status_code == 200
    again = await publish(client, owner)
    await delivery_of(client, owner, hook["id"], again, "succeeded")
    assert await delivery_rows(env.db, unseen) == []
    assert await delivery_rows(env.db, held) == []
