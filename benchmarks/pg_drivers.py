"""asyncpg against psycopg 3's pipeline mode, for apprun's PostgreSQL request shapes (issue 12).

apprun's PostgreSQL path is bound by round trips (benchmarks/RESULTS.md,
"PostgreSQL: where a request's time goes"): an authenticated list sends the
session check, ``BEGIN`` with the role and tenant settings, the SELECT that
builds the JSON reply, and ``COMMIT``, each waiting for the one before.
asyncpg cannot send a parameterized statement together with others; psycopg 3
can, in pipeline mode. This measures both drivers on the same statements, in
one process, one event loop, ``--concurrency`` tasks sharing a pool of
``--pool`` connections per driver, on a throw-away database on
127.0.0.1:5432 (created and dropped here) with apprun's tables in small:
sessions, users, tenants, memberships, a tenant-scoped collection of 10,000
rows under apprun's row-level security policy, reached through the
``apprun_data`` role (NOLOGIN) that data requests switch to, and the outbox.

Each workload runs ``--seconds`` after a short warm-up, ``--runs`` times
(interleaved); the table gives the medians of requests/s, of this process's
CPU per request, and of the PostgreSQL backends' CPU per request.

    python -m benchmarks.pg_drivers [--seconds 5] [--concurrency 32] [--pool 4] [--runs 3] [--only pipeline]

Prepared statements: asyncpg prepares and caches every parameterized
statement (its default, as apprun uses it). psycopg runs with
``prepare_threshold=0``: every statement is prepared on its first use, the
nearest to asyncpg (psycopg's default, 5, only delays it past the warm-up).
Both pools hand connections back without a reset query, as apprun's does;
one asyncpg workload keeps asyncpg's default reset, as the ceiling app of
``make bench`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from benchmarks.harness.pocketbase import BODY
from benchmarks.harness.run import machine

_SERVER = "postgresql://postgres@127.0.0.1:5432"
ROLE = "apprun_data"
ROWS = 10_000
TENANTS = 2
#: psycopg prepares a statement the first time it runs (asyncpg's behaviour); see the module docstring.
PREPARE_THRESHOLD = 0

# --- apprun's statements, as traced from `python -m benchmarks.cpu_per_request list_auth|create --postgres` ---
_TS = 'to_char(t1."{}" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
_ROW = (
    "json_build_object('id', t1.\"id\", 'tenant_id', t1.\"tenant_id\", "
    f"'created_at', {_TS.format('created_at')}, 'updated_at', {_TS.format('updated_at')}, "
    "'created_by', t1.\"created_by\", 'title', t1.\"title\", 'body', t1.\"body\", 'views', t1.\"views\", "
    "'published', t1.\"published\")"
)
SESSION = (
    "SELECT s.user_id, s.tenant_id, s.revoked_at, s.expires_at, u.disabled_at, u.is_platform_admin, "
    "tenancy_t.policy_version AS policy_version, tenancy_t.disabled_at AS tenant_disabled_at, "
    "tenancy_m.role AS member_role FROM apprun_sessions s JOIN apprun_users u ON u.id = s.user_id "
    "LEFT JOIN apprun_tenants tenancy_t ON tenancy_t.id = s.tenant_id "
    "LEFT JOIN apprun_memberships tenancy_m ON tenancy_m.tenant_id = s.tenant_id AND tenancy_m.user_id = s.user_id "
    "WHERE s.id = $1"
)
LIST = (
    "SELECT coalesce(json_agg(_x.row), '[]'::json)::text, count(*) FROM "
    f'(SELECT {_ROW} AS row FROM "bench_private" t1 WHERE t1.tenant_id = $1 ORDER BY t1.id ASC LIMIT $2) _x'
)
_COLUMNS = '"id", "tenant_id", "created_at", "updated_at", "created_by", "title", "body", "views", "published"'
INSERT = f'INSERT INTO "bench_private" ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)'
#: The INSERT with the reply folded in (apprun sends `INSERT` then `READ_BACK`).
INSERT_RETURNING = f"{INSERT} RETURNING {_ROW.replace('t1.', '')}::text"
READ_BACK = (
    "SELECT coalesce(json_agg(_x.row), '[]'::json)::text, count(*) FROM "
    f'(SELECT {_ROW} AS row FROM "bench_private" t1 WHERE t1.tenant_id = $1 AND t1.id = ANY($2::text[]) '
    "ORDER BY t1.id ASC) _x"
)
OUTBOX = (
    "INSERT INTO apprun_event_outbox (id, tenant_id, type, subject, payload, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)
NOTIFY_COMMIT = "SELECT pg_notify('apprun_outbox', ''); COMMIT"


def _begin_script(tenant: str) -> str:
    """apprun's `_LocalTransaction` script: BEGIN and the settings in one simple-protocol query."""
    return f"BEGIN; SELECT set_config('role', '{ROLE}', true), set_config('apprun.tenant_id', '{tenant}', true)"


def _pyformat(sql: str) -> str:
    """``$n`` placeholders (asyncpg, in order of appearance) as psycopg's ``%s``."""
    assert "%" not in sql
    return re.sub(r"\$\d+", "%s", sql)


P_SESSION, P_LIST, P_INSERT_RETURNING, P_OUTBOX = map(_pyformat, (SESSION, LIST, INSERT_RETURNING, OUTBOX))
P_SETTINGS = "SELECT set_config('role', %s, true), set_config('apprun.tenant_id', %s, true)"
P_NOTIFY = "SELECT pg_notify('apprun_outbox', '')"

SCHEMA = f"""
CREATE ROLE "{ROLE}" NOLOGIN;
GRANT USAGE ON SCHEMA public TO "{ROLE}";
CREATE TABLE apprun_users (id text PRIMARY KEY, email text NOT NULL UNIQUE, password_hash text,
    is_platform_admin boolean NOT NULL DEFAULT false, disabled_at timestamptz, created_at timestamptz NOT NULL);
CREATE TABLE apprun_tenants (id text PRIMARY KEY, name text NOT NULL, policy_version integer NOT NULL DEFAULT 0,
    disabled_at timestamptz, created_at timestamptz NOT NULL);
CREATE TABLE apprun_memberships (tenant_id text NOT NULL REFERENCES apprun_tenants(id) ON DELETE CASCADE,
    user_id text NOT NULL REFERENCES apprun_users(id) ON DELETE CASCADE, role text NOT NULL,
    created_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, user_id));
CREATE TABLE apprun_sessions (id text PRIMARY KEY, user_id text NOT NULL REFERENCES apprun_users(id),
    tenant_id text REFERENCES apprun_tenants(id) ON DELETE SET NULL, created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL, revoked_at timestamptz, ip text, user_agent text);
CREATE INDEX ix_apprun_sessions_user_id ON apprun_sessions (user_id);
CREATE TABLE apprun_event_outbox (id varchar(36) PRIMARY KEY, tenant_id varchar(36), type varchar(200) NOT NULL,
    subject varchar(500), payload text NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz,
    attempts integer NOT NULL DEFAULT 0, last_error text);
CREATE INDEX ix_apprun_event_outbox_published_at_id ON apprun_event_outbox (published_at, id);
CREATE INDEX ix_apprun_event_outbox_tenant_id_id ON apprun_event_outbox (tenant_id, id);
GRANT INSERT ON apprun_event_outbox TO "{ROLE}";
CREATE TABLE bench_private (id text PRIMARY KEY, tenant_id text NOT NULL, created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL, created_by text, title text, body text, views integer, published boolean);
CREATE INDEX ix_bench_private_tenant_id_id ON bench_private (tenant_id, id);
GRANT SELECT, INSERT, UPDATE, DELETE ON bench_private TO "{ROLE}";
ALTER TABLE bench_private ENABLE ROW LEVEL SECURITY;
ALTER TABLE bench_private FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON bench_private USING (tenant_id = current_setting('apprun.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('apprun.tenant_id', true));
"""


class Refused(Exception):
    """The session no longer backs the token (apprun answers 401)."""


def _check_session(row: Any, user: str, tenant: str) -> None:
    """apprun's `session_problem`, in short: the request fails unless the session still holds."""
    if (
        row is None
        or row[0] != user
        or row[1] != tenant
        or row[2] is not None
        or row[4] is not None
        or row[3] <= dt.datetime.now(dt.UTC)
        or row[7] is not None
        or row[8] is None
    ):
        raise Refused


@dataclass
class World:
    """The seeded identities and the pools every workload shares."""

    db: str
    user: str
    tenant: str
    session: str
    apg: Any = None  # asyncpg.Pool, released without a reset query (as apprun does)
    apg_reset: Any = None  # asyncpg.Pool with asyncpg's default reset on release (as the ceiling app)
    pg3: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
    created: int = field(default=0)

    def new_row(self) -> tuple[list[Any], list[Any]]:
        """A create's INSERT values and its outbox row's (the event is built before the INSERT's reply)."""
        self.created += 1
        now = dt.datetime.now(dt.UTC)
        row_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.isoformat().replace("+00:00", "Z")
        record = {"id": row_id, "tenant_id": self.tenant, "created_at": stamp, "updated_at": stamp,
                  "created_by": self.user, "title": "New", "body": BODY, "views": 1, "published": True}  # fmt: skip
        data = {"collection": "bench_private", "record": record, "old": None}
        event = {"specversion": "1.0", "id": event_id, "source": "apprun/bench", "type": "apprun.record.created",
                 "subject": f"bench_private/{row_id}", "time": stamp, "datacontenttype": "application/json",
                 "tenantid": self.tenant, "data": data}  # fmt: skip
        values = [row_id, self.tenant, now, now, self.user, "New", BODY, 1, True]
        outbox = [event_id, self.tenant, "apprun.record.created", event["subject"], json.dumps(event), now]
        return values, outbox


# --- the workloads: one request each -------------------------------------------------------------
async def list_asyncpg_bare(w: World) -> None:
    async with w.apg.acquire() as conn:
        await conn.fetchrow(LIST, w.tenant, 20)


async def list_asyncpg_bare_reset(w: World) -> None:
    async with w.apg_reset.acquire() as conn:
        await conn.fetchrow(LIST, w.tenant, 20)


async def _asyncpg_session(w: World, session: str) -> None:
    async with w.apg.acquire() as conn:
        _check_session(await conn.fetchrow(SESSION, session), w.user, w.tenant)


async def _asyncpg_list_tx(w: World) -> None:
    async with w.apg.acquire() as conn:
        await conn.execute(_begin_script(w.tenant))
        try:
            await conn.fetchrow(LIST, w.tenant, 20)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


async def list_asyncpg_apprun(w: World, session: str | None = None) -> None:
    await _asyncpg_session(w, session or w.session)
    await _asyncpg_list_tx(w)


async def list_asyncpg_no_session(w: World) -> None:
    await _asyncpg_list_tx(w)


async def list_psycopg_bare(w: World) -> None:
    assert w.pg3 is not None
    async with w.pg3.connection() as conn:
        await (await conn.execute(P_LIST, (w.tenant, 20))).fetchone()


async def _psycopg_list_pipeline(w: World, session: str | None) -> None:
    """Everything queued, one Sync: the session row is checked before the list's result is used."""
    assert w.pg3 is not None
    async with w.pg3.connection() as conn:
        async with conn.pipeline():
            checked = await conn.execute(P_SESSION, (session,)) if session else None
            await conn.execute("BEGIN")
            await conn.execute(P_SETTINGS, (ROLE, w.tenant))
            listed = await conn.execute(P_LIST, (w.tenant, 20))
            await conn.execute("COMMIT")  # a read: COMMIT or ROLLBACK are the same, and the reply is dropped
        if checked is not None:
            _check_session(await checked.fetchone(), w.user, w.tenant)
        await listed.fetchone()


async def list_psycopg_pipeline(w: World, session: str | None = None) -> None:
    await _psycopg_list_pipeline(w, session or w.session)


async def list_psycopg_pipeline_no_session(w: World) -> None:
    await _psycopg_list_pipeline(w, None)


async def list_psycopg_script(w: World, session: str | None = None) -> None:
    """One simple-protocol query of five statements, the values quoted by psycopg (no prepared statements)."""
    assert w.pg3 is not None
    async with w.pg3.connection() as conn:
        cur = psycopg.AsyncClientCursor(conn)
        script = f"{P_SESSION}; BEGIN; {P_SETTINGS}; {P_LIST}; COMMIT"
        await cur.execute(script, (session or w.session, ROLE, w.tenant, w.tenant, 20))
        _check_session(await cur.fetchone(), w.user, w.tenant)
        cur.nextset()  # BEGIN
        cur.nextset()  # the settings
        cur.nextset()
        await cur.fetchone()


async def create_asyncpg_bare(w: World) -> None:
    values, _ = w.new_row()
    async with w.apg.acquire() as conn:
        await conn.fetchval(INSERT_RETURNING, *values)


async def _asyncpg_create(w: World, session: str, *, read_back: bool) -> None:
    values, outbox = w.new_row()
    await _asyncpg_session(w, session)
    async with w.apg.acquire() as conn:
        await conn.execute(_begin_script(w.tenant))
        try:
            if read_back:  # apprun today: the INSERT, then the representation read back
                await conn.execute(INSERT, *values)
                await conn.fetchrow(READ_BACK, w.tenant, [values[0]])
            else:
                await conn.fetchval(INSERT_RETURNING, *values)
            await conn.execute(OUTBOX, *outbox)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute(NOTIFY_COMMIT)


async def create_asyncpg_apprun(w: World, session: str | None = None) -> None:
    await _asyncpg_create(w, session or w.session, read_back=True)


async def create_asyncpg_returning(w: World, session: str | None = None) -> None:
    await _asyncpg_create(w, session or w.session, read_back=False)


async def create_psycopg_bare(w: World) -> None:
    assert w.pg3 is not None
    values, _ = w.new_row()
    async with w.pg3.connection() as conn:
        await (await conn.execute(P_INSERT_RETURNING, values)).fetchone()


async def create_psycopg_pipeline(w: World, session: str | None = None) -> None:
    """Two Syncs: the writes wait, uncommitted, until the session row has been checked; then COMMIT or ROLLBACK."""
    assert w.pg3 is not None
    values, outbox = w.new_row()
    async with w.pg3.connection() as conn:
        async with conn.pipeline() as pipeline:
            checked = await conn.execute(P_SESSION, (session or w.session,))
            await conn.execute("BEGIN")
            await conn.execute(P_SETTINGS, (ROLE, w.tenant))
            inserted = await conn.execute(P_INSERT_RETURNING, values)
            await conn.execute(P_OUTBOX, outbox)
            await pipeline.sync()
            try:
                _check_session(await checked.fetchone(), w.user, w.tenant)
            except Refused:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute(P_NOTIFY)
            await conn.execute("COMMIT")
        await inserted.fetchone()


async def create_psycopg_pipeline_no_session(w: World) -> None:
    assert w.pg3 is not None
    values, outbox = w.new_row()
    async with w.pg3.connection() as conn:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            await conn.execute(P_SETTINGS, (ROLE, w.tenant))
            inserted = await conn.execute(P_INSERT_RETURNING, values)
            await conn.execute(P_OUTBOX, outbox)
            await conn.execute(P_NOTIFY)
            await conn.execute("COMMIT")
        await inserted.fetchone()


Workload = Callable[[World], Awaitable[None]]
#: name → (round trips, sequential waits for the server, what it is, the request)
WORKLOADS: dict[str, tuple[str, str, Workload]] = {
    "list asyncpg bare": ("1", "the ceiling: the list SELECT alone", list_asyncpg_bare),
    "list asyncpg bare+reset": ("2", "the same, asyncpg's reset query on release (make bench's ceiling app)",
                                list_asyncpg_bare_reset),
    "list asyncpg apprun": ("4", "session check; BEGIN+settings; SELECT; COMMIT (apprun today)", list_asyncpg_apprun),
    "list asyncpg no-session": ("3", "BEGIN+settings; SELECT; COMMIT", list_asyncpg_no_session),
    "list psycopg bare": ("1", "the list SELECT alone", list_psycopg_bare),
    "list psycopg pipeline": ("1", "session check, BEGIN, settings, SELECT, COMMIT, one Sync", list_psycopg_pipeline),
    "list psycopg pipeline no-session": ("1", "BEGIN, settings, SELECT, COMMIT, one Sync",
                                         list_psycopg_pipeline_no_session),
    "list psycopg script": ("1", "the five as one simple query, values quoted client-side", list_psycopg_script),
    "create asyncpg bare": ("1", "the ceiling: INSERT … RETURNING alone", create_asyncpg_bare),
    "create asyncpg apprun": ("6", "session; BEGIN+settings; INSERT; read-back; outbox; NOTIFY+COMMIT (apprun today)",
                              create_asyncpg_apprun),
    "create asyncpg returning": ("5", "session; BEGIN+settings; INSERT … RETURNING; outbox; NOTIFY+COMMIT",
                                 create_asyncpg_returning),
    "create psycopg bare": ("1", "INSERT … RETURNING alone", create_psycopg_bare),
    "create psycopg pipeline": ("2", "session, BEGIN, settings, INSERT … RETURNING, outbox, Sync; NOTIFY, COMMIT",
                                create_psycopg_pipeline),
    "create psycopg pipeline no-session": ("1", "BEGIN, settings, INSERT … RETURNING, outbox, NOTIFY, COMMIT",
                                           create_psycopg_pipeline_no_session),
}  # fmt: skip
#: What each ratio is taken against.
CEILING = {"list": "list asyncpg bare", "create": "create asyncpg bare"}


# --- the database ------------------------------------------------------------------------------
@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A database of its own on the machine's server, dropped afterwards (as `benchmarks.cpu_per_request`)."""
    name = f"apprun_drivers_{os.getpid()}"
    admin = await asyncpg.connect(f"{_SERVER}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(f"{_SERVER}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def seed(db: str) -> World:
    """The schema, one user with a live session in the first tenant, and `ROWS` rows over `TENANTS` tenants."""
    conn = await asyncpg.connect(f"{_SERVER}/{db}")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
        schema = SCHEMA if not exists else SCHEMA.split(";", 1)[1]  # the role is the server's, shared by databases
        await conn.execute(schema)
        await conn.execute(f'GRANT "{ROLE}" TO CURRENT_USER')
        now = dt.datetime.now(dt.UTC)
        tenants = [str(uuid.uuid4()) for _ in range(TENANTS)]
        user, session = str(uuid.uuid4()), str(uuid.uuid4())
        await conn.execute("INSERT INTO apprun_users (id, email, created_at) VALUES ($1, $2, $3)", user, "a@b.c", now)
        for tenant in tenants:
            await conn.execute("INSERT INTO apprun_tenants (id, name, created_at) VALUES ($1, $1, $2)", tenant, now)
        await conn.execute(
            "INSERT INTO apprun_memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'member', $3)",
            tenants[0], user, now,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO apprun_sessions (id, user_id, tenant_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            session, user, tenants[0], now, now + dt.timedelta(days=1),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO bench_private SELECT gen_random_uuid()::text, ($1::text[])[1 + i % $2], now(), now(), $3, "
            "'Record ' || i, $4, i, i % 2 = 0 FROM generate_series(0, $5 - 1) AS i",
            tenants, TENANTS, user, BODY, ROWS,
        )  # fmt: skip
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return World(db=db, user=user, tenant=tenants[0], session=session)


async def _no_reset(_: Any) -> None:
    """Release without a reset query, as apprun's pool does (nothing outlives a transaction)."""


async def open_pools(w: World, size: int) -> None:
    dsn = f"{_SERVER}/{w.db}"
    w.apg = await asyncpg.create_pool(dsn, min_size=size, max_size=size, reset=_no_reset)
    w.apg_reset = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
    kwargs = {"autocommit": True, "prepare_threshold": PREPARE_THRESHOLD}
    w.pg3 = AsyncConnectionPool(dsn, min_size=size, max_size=size, kwargs=kwargs, open=False)
    await w.pg3.open(wait=True)


async def close_pools(w: World) -> None:
    if w.pg3 is not None:
        await w.pg3.close()
    for pool in (w.apg, w.apg_reset):
        if pool is not None:
            await pool.close()


async def self_check(w: World) -> None:
    """Every authenticated shape refuses a session that does not exist, and a refused create leaves no row."""
    missing = str(uuid.uuid4())
    shapes: list[Callable[[World, str], Awaitable[None]]] = [
        list_asyncpg_apprun, list_psycopg_pipeline, list_psycopg_script,
        create_asyncpg_apprun, create_asyncpg_returning, create_psycopg_pipeline,
    ]  # fmt: skip
    async with w.apg.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM bench_private")
        for shape in shapes:
            try:
                await shape(w, missing)
            except Refused:
                continue
            raise AssertionError(f"{shape.__name__} served a request whose session does not exist")
        after = await conn.fetchval("SELECT count(*) FROM bench_private")
    assert before == after, "a refused create left its row"
    for name, (_, _, workload) in WORKLOADS.items():  # and every shape works
        try:
            await workload(w)
        except Exception as exc:
            raise AssertionError(f"{name}: {exc!r}") from exc


# --- measuring ---------------------------------------------------------------------------------
async def _backends_cpu(w: World) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving this database (the pools' connections)."""
    async with w.apg.acquire() as conn:
        pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", w.db)
    total = 0.0
    for (pid,) in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def run_once(w: World, workload: Workload, seconds: float, concurrency: int) -> dict[str, float]:
    """``concurrency`` tasks repeating ``workload`` for ``seconds`` (after a warm-up of a fifth of that)."""
    deadline = 0.0
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await workload(w)
            done += 1

    deadline = time.perf_counter() + max(0.5, seconds / 5)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    server = await _backends_cpu(w)
    done = 0
    cpu, wall = time.process_time(), time.perf_counter()
    deadline = wall + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server = await _backends_cpu(w) - server
    return {"rps": done / wall, "us_cpu": cpu / done * 1e6, "us_server": server / done * 1e6}


async def measure(names: list[str], seconds: float, concurrency: int, pool: int, runs: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    async with throwaway_database() as db:
        w = await seed(db)
        try:
            await open_pools(w, pool)
            await self_check(w)
            order = list(names)
            for run in range(runs):  # interleaved and shuffled, so a noisy minute spreads over every workload
                random.Random(run).shuffle(order)  # noqa: S311 - an order, not a secret
                for name in order:
                    samples[name].append(await run_once(w, WORKLOADS[name][2], seconds, concurrency))
                    print(f"run {run + 1}/{runs} {name}: {samples[name][-1]['rps']:,.0f}/s", file=sys.stderr)
        finally:
            await close_pools(w)
    medians = {name: {k: statistics.median(s[k] for s in runs_) for k in runs_[0]} for name, runs_ in samples.items()}
    return {"medians": medians, "samples": samples}


def table(medians: dict[str, dict[str, float]]) -> str:
    lines = [
        "| workload | round trips | req/s | ÷ ceiling | client CPU µs/req | server CPU µs/req | both | what is sent |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in medians.items():
        trips, what, _ = WORKLOADS[name]
        ceiling = medians.get(CEILING[name.split()[0]])
        ratio = f"{m['rps'] / ceiling['rps']:.2f}" if ceiling else "–"
        lines.append(
            f"| {name} | {trips} | {m['rps']:,.0f} | {ratio} | {m['us_cpu']:,.0f} | {m['us_server']:,.0f} "
            f"| {m['us_cpu'] + m['us_server']:,.0f} | {what} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per workload and run")
    parser.add_argument("--concurrency", type=int, default=32, help="tasks sending requests at once")
    parser.add_argument("--pool", type=int, default=4, help="connections per pool")
    parser.add_argument("--runs", type=int, default=3, help="runs of each workload; the table gives medians")
    parser.add_argument("--only", default="", help="only the workloads whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the medians and every run's figures here")
    args = parser.parse_args(argv)
    names = [name for name in WORKLOADS if args.only in name]
    load = os.getloadavg()[0]
    result = asyncio.run(measure(names, args.seconds, args.concurrency, args.pool, args.runs))
    host = machine() | {"load_before": load, "load_after": os.getloadavg()[0]}
    print(f"{host['cpu']}, {host['cores']} cores; psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq "
          f"{psycopg.pq.version()}), asyncpg {asyncpg.__version__}; {args.concurrency} tasks, pool of {args.pool}, "
          f"{args.seconds:g} s × {args.runs} runs, medians; load average {load:.1f} before, "
          f"{host['load_after']:.1f} after")  # fmt: skip
    print(table(result["medians"]))
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "args": vars(args) | {"json": str(args.json)}, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
