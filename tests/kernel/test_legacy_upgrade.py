"""An installation from before the modules had their own migrations upgrades without loss.

A database is built with the legacy chain (to ``0004``, and to ``0005``) on
both dialects and filled with SQL as that apprun would have left it: users, a
tenant with members, roles and policies, sessions, an API key, a collection
with its table and rows, an event in the outbox, a webhook. The new code
upgrades it; every row is still there, and the application serves it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.auth.opaque import hash_token, new_token
from apprun.auth.passwords import Passwords
from apprun.data.schema.catalog import Catalog
from apprun.data.schema.model import CollectionDef
from apprun.events.envelope import encode, make_event
from apprun.kernel.db import Connection, Database, create_database
from apprun.kernel.db.migrate import LEGACY_HEAD, migration_state, upgrade
from apprun.kernel.ids import new_id
from apprun.kernel.times import utcnow
from apprun.modules import MIGRATIONS, Settings
from apprun.rbac.model import BUILTIN_POLICIES, BUILTIN_ROLES
from tests.support.accounts import PASSWORD, bearer, login
from tests.support.migrations import build_legacy

#: Every table the legacy chain (0001-0005) made.
LEGACY_TABLES = frozenset(
    {
        "apprun_api_keys",
        "apprun_audit_log",
        "apprun_collection_history",
        "apprun_collections",
        "apprun_event_outbox",
        "apprun_event_processed",
        "apprun_identities",
        "apprun_mail_outbox",
        "apprun_memberships",
        "apprun_meta",
        "apprun_oauth_states",
        "apprun_one_time_tokens",
        "apprun_policies",
        "apprun_rate_limits",
        "apprun_refresh_tokens",
        "apprun_roles",
        "apprun_sessions",
        "apprun_tenants",
        "apprun_users",
        "apprun_webhook_attempts",
        "apprun_webhook_deliveries",
        "apprun_webhooks",
    }
)

NOTES = {"name": "notes", "fields": [{"name": "title", "type": "text", "required": True}]}


@dataclass
class Seeded:
    tenant: str
    alice: str
    bob: str
    api_key: str
    event_id: str
    titles: list[str]


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Database]:
    db = create_database(settings)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def _people(conn: Connection, tenant: str, password_hash: str) -> tuple[str, str]:
    """Alice owns the tenant, Bob is a member; the tenant's built-in roles and policies; a session of Bob's."""
    alice, bob, now = new_id(), new_id(), utcnow()
    for user, email in ((alice, "alice@legacy.example"), (bob, "bob@legacy.example")):
        await conn.execute(
            "INSERT INTO apprun_users (id, email, password_hash, data, is_platform_admin, email_verified_at, "
            "created_at, updated_at) VALUES ($1, $2, $3, '{}', $4, $5, $5, $5)",
            user, email, password_hash, False, now,
        )  # fmt: skip
    await conn.execute(
        "INSERT INTO apprun_tenants (id, name, personal, created_by, policy_version, created_at, updated_at) "
        "VALUES ($1, 'Legacy Inc', $2, $3, 1, $4, $4)",
        tenant, False, alice, now,
    )  # fmt: skip
    for name, description in BUILTIN_ROLES.items():
        await conn.execute(
            "INSERT INTO apprun_roles (tenant_id, name, description, builtin, created_at) VALUES ($1, $2, $3, $4, $5)",
            tenant, name, description, True, now,
        )  # fmt: skip
    for role, obj, action, effect in BUILTIN_POLICIES:
        await conn.execute(
            "INSERT INTO apprun_policies (id, tenant_id, role, object, action, effect, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            new_id(), tenant, role, obj, action, effect, now,
        )  # fmt: skip
    for user, role in ((alice, "owner"), (bob, "member")):
        await conn.execute(
            "INSERT INTO apprun_memberships (tenant_id, user_id, role, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $4)",
            tenant, user, role, now,
        )  # fmt: skip
    await conn.execute(
        "INSERT INTO apprun_sessions (id, user_id, tenant_id, auth_method, created_at, last_used_at, expires_at) "
        "VALUES ($1, $2, $3, 'password', $4, $4, $5)",
        new_id(), bob, tenant, now, now + timedelta(days=7),
    )  # fmt: skip
    return alice, bob


async def _tenant_things(conn: Connection, tenant: str, alice: str) -> tuple[str, str]:
    """An API key (the member role), an event waiting in the outbox, a webhook (inactive: nothing to send)."""
    key, now = new_token("ak_"), utcnow()
    await conn.execute(
        "INSERT INTO apprun_api_keys (id, tenant_id, name, prefix, key_hash, kind, role, created_by, created_at) "
        "VALUES ($1, $2, 'ci', $3, $4, 'standard', 'member', $5, $6)",
        new_id(), tenant, key[:10], hash_token(key), alice, now,
    )  # fmt: skip
    event = make_event("app.legacy.noted", tenant_id=tenant, subject="notes/1", data={"kept": True})
    await conn.execute(
        "INSERT INTO apprun_event_outbox (id, tenant_id, type, subject, payload, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        event.id, tenant, event.type, event.subject, encode(event).decode(), now,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO apprun_webhooks (id, tenant_id, url, event_types, secret, active, consecutive_failures, "
        "created_by, created_at, updated_at) VALUES ($1, $2, 'https://hooks.example.com/x', $3, 'whsec_x', $4, 0, "
        "$5, $6, $6)",
        new_id(), tenant, json.dumps([]), False, alice, now,
    )  # fmt: skip
    return key, event.id


async def _seed(settings: Settings, db: Database) -> Seeded:
    passwords = Passwords()
    try:
        password_hash = await passwords.hash(PASSWORD)
    finally:
        passwords.close()
    tenant = new_id()
    async with db.transaction() as conn:
        alice, bob = await _people(conn, tenant, password_hash)
        key, event_id = await _tenant_things(conn, tenant, alice)
    # The collection's table as the data module builds it (its DDL), then rows written with SQL.
    catalog = Catalog(settings, db)
    try:
        await catalog.ensure_data_role()
        await catalog.apply(CollectionDef.model_validate(NOTES), actor=alice)
    finally:
        await catalog.close()
    titles = ["kept through the upgrade", "and this one"]
    async with db.transaction() as conn:
        for title in titles:
            now = utcnow()
            await conn.execute(
                "INSERT INTO notes (id, tenant_id, created_at, updated_at, created_by, title) "
                "VALUES ($1, $2, $3, $3, $4, $5)",
                new_id(), tenant, now, alice, title,
            )  # fmt: skip
    return Seeded(tenant, alice, bob, key, event_id, titles)


async def _counts(db: Database, tables: list[str]) -> dict[str, int]:
    async with db.read() as conn:
        return {table: int(await conn.fetchval(f"SELECT count(*) FROM {table}")) for table in tables}  # noqa: S608


async def _served(client: AsyncTestClient[Any], seeded: Seeded) -> None:
    """Sign in, read the rows through /data (a person and the API key), the members, the webhook, the event."""
    alice = await login(client, "alice@legacy.example")
    notes = await client.get("/data/notes?order=title", headers=bearer(alice))
    assert notes.status_code == 200, notes.text
    assert [row["title"] for row in notes.json()] == sorted(seeded.titles)
    bob = await login(client, "bob@legacy.example")
    assert len((await client.get("/data/notes", headers=bearer(bob))).json()) == len(seeded.titles)
    by_key = await client.get("/data/notes", headers={"apikey": seeded.api_key})
    assert by_key.status_code == 200, by_key.text
    assert len(by_key.json()) == len(seeded.titles)
    members = await client.get(f"/api/v1/tenants/{seeded.tenant}/members", headers=bearer(bob))
    assert {(m["user_id"], m["role"]) for m in members.json()} == {(seeded.alice, "owner"), (seeded.bob, "member")}
    # Bob's session from before the upgrade is still his, beside the new one.
    assert len((await client.get("/auth/sessions", headers=bearer(bob))).json()) == 2
    hooks = await client.get("/api/v1/webhooks", headers=bearer(alice))
    assert [hook["url"] for hook in hooks.json()] == ["https://hooks.example.com/x"]
    events = await client.get("/api/v1/events", headers=bearer(alice))
    assert seeded.event_id in {event["id"] for event in events.json()}, events.text


@pytest.mark.parametrize("legacy", ["0004", LEGACY_HEAD])
async def test_a_legacy_database_keeps_its_data_and_is_served(settings: Settings, legacy: str) -> None:
    await build_legacy(settings.database, legacy)
    # What the legacy chain had made by then (0005 added the rate-limit counters). The chain is
    # frozen, so its tables are listed, not taken from today's modules (a new module's come later).
    tables = [*sorted(LEGACY_TABLES - ({"apprun_rate_limits"} if legacy < "0005" else set())), "notes"]
    async with _opened(settings) as db:
        seeded = await _seed(settings, db)
        before = await _counts(db, tables)
    assert (await migration_state(settings.database, MIGRATIONS)).current == (legacy,)

    state = await upgrade(settings.database, MIGRATIONS)

    assert state.up_to_date
    async with _opened(settings) as db:
        assert await _counts(db, tables) == before
    assert before["notes"] == len(seeded.titles)
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as client:
        await _served(client, seeded)
