"""The ceiling: the same SQL as apprun's, behind the thinnest handler there is.

A bare ASGI callable (no framework, no middleware, no auth, no validation)
served by granian like apprun, running hand-written SQL of the same shape
apprun compiles — the database builds the JSON body — with the raw driver
(``sqlite3`` on SQLite, asyncpg on PostgreSQL) against apprun's own tables.
What apprun does on top (tokens, rules, RBAC, tenant settings, events,
logging, metrics) is what the ratio apprun ÷ ceiling prices.

Configured by environment: ``CEILING_DIALECT`` (sqlite|postgres),
``CEILING_SQLITE`` (file) or ``CEILING_PG_DATABASE``, ``CEILING_TENANT`` (the
tenant the authenticated list and create run for).

Routes: ``GET /list_public``, ``GET /list_auth``, ``GET /view/{id}``,
``POST /create`` (JSON body), ``POST /login`` (JSON body; reads the user's
hash and verifies it with argon2-cffi, apprun's hasher).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DIALECT = os.environ.get("CEILING_DIALECT", "sqlite")
TENANT = os.environ.get("CEILING_TENANT", "")
_HASHER = PasswordHasher()

# The statements are the same on both databases; what differs is spelled here. PostgreSQL formats
# timestamps and stamps a new row's times itself; SQLite stores them as text (the handler stamps a new
# row), and has no boolean type, so ``published`` becomes a JSON boolean explicitly.
if DIALECT == "postgres":
    _PARAMS = [f"${n}" for n in range(1, 7)]
    _OBJECT, _TEXT, _NOW = "json_build_object", "::text", "now(), now()"
    _TS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    _CREATED, _UPDATED, _PUBLISHED = _TS.format("created_at"), _TS.format("updated_at"), "published"
    _ARRAY = "coalesce(json_agg(_x.row), '[]'::json)::text"
else:
    _PARAMS = ["?"] * 6
    _OBJECT, _TEXT, _NOW = "json_object", "", "?, ?"
    _CREATED, _UPDATED = "created_at", "updated_at"
    _PUBLISHED = "CASE WHEN published IS NULL THEN NULL WHEN published THEN json('true') ELSE json('false') END"
    _ARRAY = "coalesce(json_group_array(json(_x.row)), '[]')"
_P1, _P2, _P3, _P4, _P5, _P6 = _PARAMS

_COLUMNS = (
    f"{_OBJECT}('id', id, 'tenant_id', tenant_id, 'created_at', {_CREATED}, 'updated_at', {_UPDATED}, "
    f"'created_by', created_by, 'title', title, 'body', body, 'views', views, 'published', {_PUBLISHED})"
)
_AGG = f"SELECT {_ARRAY} FROM (SELECT {_COLUMNS} AS row FROM {{table}} {{where}} ORDER BY id LIMIT 20) _x"
LIST_PUBLIC = _AGG.format(table="bench_public", where="")
LIST_AUTH = _AGG.format(table="bench_private", where=f"WHERE tenant_id = {_P1}")
VIEW = f"SELECT {_COLUMNS}{_TEXT} FROM bench_public WHERE id = {_P1}"
CREATE = (
    "INSERT INTO bench_private (id, tenant_id, created_at, updated_at, created_by, title, body, views, published) "
    f"VALUES ({_P1}, {_P2}, {_NOW}, NULL, {_P3}, {_P4}, {_P5}, {_P6}) RETURNING {_COLUMNS}{_TEXT}"
)
LOGIN = f"SELECT password_hash FROM apprun_users WHERE email = {_P1}"

_pool: asyncio.Task[asyncpg.Pool] | None = None
_sqlite: sqlite3.Connection | None = None


async def _no_reset(_: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (``RESET ALL; UNLISTEN *; …``, a round trip), as apprun's pool does."""


async def _pg() -> asyncpg.Pool:
    """The worker's pool (10 connections, as apprun's default), created once however many requests arrive first."""
    global _pool  # noqa: PLW0603 - one pool per worker process
    if _pool is None:
        _pool = asyncio.ensure_future(
            asyncpg.create_pool(
                host="127.0.0.1",
                port=5432,
                user="postgres",
                database=os.environ["CEILING_PG_DATABASE"],
                max_size=10,
                reset=_no_reset,
            )
        )
    return await asyncio.shield(_pool)


def _lite() -> sqlite3.Connection:
    global _sqlite  # noqa: PLW0603 - one connection per worker process
    if _sqlite is None:
        _sqlite = sqlite3.connect(os.environ["CEILING_SQLITE"], isolation_level=None, check_same_thread=False)
        _sqlite.execute("PRAGMA journal_mode=WAL")
        _sqlite.execute("PRAGMA synchronous=NORMAL")
        _sqlite.execute("PRAGMA busy_timeout=5000")
    return _sqlite


async def _one(sql: str, *args: Any) -> Any:
    if DIALECT == "postgres":
        async with (await _pg()).acquire() as conn:
            return await conn.fetchval(sql, *args)
    row = _lite().execute(sql, args).fetchone()
    return row[0] if row else None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _create(data: dict[str, Any]) -> Any:
    new_id = str(uuid.uuid4())
    if DIALECT == "postgres":
        args = (new_id, TENANT, data["title"], data["body"], data["views"], data["published"])
        return await _one(CREATE, *args)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    args2 = (new_id, TENANT, now, now, data["title"], data["body"], data["views"], int(data["published"]))
    return await _one(CREATE, *args2)


async def _login(data: dict[str, Any]) -> tuple[int, bytes]:
    stored = await _one(LOGIN, data["email"])
    try:
        if stored is None:
            raise VerifyMismatchError
        _HASHER.verify(stored, data["password"])
    except VerifyMismatchError:
        return 400, b'{"code":"invalid_credentials"}'
    return 200, b'{"ok":true}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0911 - one return per route
    """Route on method and path; nothing else."""
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    method: str = scope["method"]
    if method == "GET" and path == "/list_public":
        return await _reply(send, 200, (await _one(LIST_PUBLIC)).encode())
    if method == "GET" and path == "/list_auth":
        return await _reply(send, 200, (await _one(LIST_AUTH, TENANT)).encode())
    if method == "GET" and path.startswith("/view/"):
        row = await _one(VIEW, path[6:])
        return await _reply(send, 200, row.encode()) if row else await _reply(send, 404, b"{}")
    if method == "POST" and path == "/create":
        return await _reply(send, 201, (await _create(json.loads(await _body(receive)))).encode())
    if method == "POST" and path == "/login":
        status, body = await _login(json.loads(await _body(receive)))
        return await _reply(send, status, body)
    if path == "/alive":
        return await _reply(send, 200, b'{"status":"UP"}')
    return await _reply(send, 404, b"{}")
