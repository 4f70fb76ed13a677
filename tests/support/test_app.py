"""The apprun app plus routes only tests need (a failure, a slow request).

Served by `LiveServer(with_test_routes=True)` through
``apprun serve --app tests.support.test_app:asgi``; in-process tests pass
`TEST_ROUTES` to `create_app(extra_routes=...)`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromQuery, JSONBody

from apprun.app import create_app
from apprun.events import CloudEvent, HandlerContext
from apprun.events.subscriptions import Registry
from apprun.kernel.db import Database, create_database
from apprun.kernel.db.migrate import upgrade
from apprun.kernel.logging import get_logger
from apprun.modules import MIGRATIONS, Settings, load_settings

__all__ = ["HANDLED_TABLE", "TEST_ROUTES", "TEST_SUBSCRIBERS", "asgi", "prepare"]


_log = get_logger("apprun.test")


class Boom(RuntimeError):
    pass


@get("/_test/boom")
async def boom() -> None:
    # A message that must never reach the client.
    raise Boom("secret internals: SELECT password FROM users /srv/app.py")


@get("/_test/slow")
async def slow(seconds: FromQuery[float] = 1.0) -> dict[str, Any]:
    # Tests wait for this line to know the request is in flight.
    _log.info("test_slow_started", seconds=seconds)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@get("/_test/db")
async def db_roundtrip(state: State) -> dict[str, Any]:
    async with state.runtime.db.read() as conn:
        value = await conn.fetchval("SELECT 1")
    return {"value": value}


@get("/_test/db/sleep")
async def db_sleep(state: State, seconds: FromQuery[float] = 5.0) -> dict[str, Any]:
    runtime = state.runtime
    async with runtime.db.read() as conn:
        if runtime.db.dialect == "postgres":
            await conn.execute("SELECT pg_sleep($1)", seconds)
        else:  # a query that runs long enough for SQLite's progress handler to cancel it
            await conn.fetchval("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c")
    return {"slept": seconds}


@get("/_test/db/session")
async def db_session(state: State) -> dict[str, Any]:
    """What a pooled connection carries between requests (checklist 15).

    PostgreSQL: the role and tenant a data request set must have ended with
    its transaction, and no transaction may be left open. SQLite has no roles
    or settings; a transaction left open on the writer would make this one
    fail to begin.
    """
    db = state.runtime.db
    if db.dialect == "postgres":
        async with db.read() as conn:
            row = await conn.fetchrow(
                "SELECT current_user::text, session_user::text, current_setting('role'), "
                "current_setting('apprun.tenant_id', true)"
            )
            assert row is not None
            driver: Any = conn  # the asyncpg connection underneath (`PgConnection.raw`)
            return {
                "dialect": "postgres",
                "current_user": row[0],
                "session_user": row[1],
                "role": row[2],
                "tenant_id": row[3],
                "in_transaction": driver.raw.is_in_transaction(),
            }
    async with db.transaction() as conn:
        await conn.fetchval("SELECT 1")
    return {"dialect": "sqlite"}


@post("/_test/echo")
async def echo(data: JSONBody[dict[str, int]]) -> dict[str, int]:
    return data


TEST_ROUTES = [boom, slow, db_roundtrip, db_sleep, db_session, echo]

#: Event handlers only tests run. They write to ``test_handled`` (created by
#: the test with `prepare`), in the delivery's transaction.
TEST_SUBSCRIBERS = Registry()
HANDLED_TABLE = "CREATE TABLE test_handled (consumer TEXT NOT NULL, event_id TEXT NOT NULL, attempt INTEGER NOT NULL)"


async def prepare(settings: Settings) -> Database:
    """Migrate and create the test subscribers' table; returns a test-loop Database."""
    await upgrade(settings.database, MIGRATIONS)
    db = create_database(settings)
    await db.open()
    async with db.transaction() as conn:
        await conn.execute(HANDLED_TABLE)
    return db


@TEST_SUBSCRIBERS.subscribe("app.test.recorded", name="test.recorder")
async def record(event: CloudEvent, ctx: HandlerContext) -> None:
    await ctx.conn.execute(
        "INSERT INTO test_handled (consumer, event_id, attempt) VALUES ($1, $2, $3)",
        ctx.consumer,
        event.id,
        ctx.attempt,
    )


@TEST_SUBSCRIBERS.subscribe("app.test.flaky", name="test.flaky")
async def fail_first_time(event: CloudEvent, ctx: HandlerContext) -> None:
    await ctx.conn.execute(
        "INSERT INTO test_handled (consumer, event_id, attempt) VALUES ($1, $2, $3)",
        ctx.consumer,
        event.id,
        ctx.attempt,
    )
    if ctx.attempt == 1:
        raise RuntimeError("first delivery fails (and its insert rolls back)")


@TEST_SUBSCRIBERS.subscribe("app.test.slow", name="test.slow")
async def slow_first_time(event: CloudEvent, ctx: HandlerContext) -> None:
    """The first delivery hangs (the process gets killed meanwhile); later ones record."""
    if ctx.attempt == 1:
        await asyncio.sleep(60)
    await ctx.conn.execute(
        "INSERT INTO test_handled (consumer, event_id, attempt) VALUES ($1, $2, $3)",
        ctx.consumer,
        event.id,
        ctx.attempt,
    )


@TEST_SUBSCRIBERS.subscribe("app.test.poison", name="test.poison", max_deliver=3)
async def always_fail(event: CloudEvent, ctx: HandlerContext) -> None:
    raise ValueError(f"cannot handle {event.id}")


def asgi() -> Any:
    return create_app(load_settings(), extra_routes=TEST_ROUTES, subscribers=[TEST_SUBSCRIBERS])
