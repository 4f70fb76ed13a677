"""Users: the rows, their public view, and email normalisation."""

from __future__ import annotations

import json
from typing import Any

from email_validator import EmailNotValidError, validate_email

from apprun.kernel.db import Connection, Row
from apprun.kernel.errors import BadRequest
from apprun.kernel.ids import new_id
from apprun.kernel.times import isoformat, to_datetime, utcnow

__all__ = ["USER_COLUMNS", "insert_user", "normalize_email", "user_by_email", "user_by_id", "user_view"]

USER_COLUMNS = (
    "id, email, password_hash, name, locale, data, is_platform_admin, email_verified_at, "
    "disabled_at, last_login_at, created_at, updated_at"
)
MAX_DATA_BYTES = 16 * 1024


def normalize_email(email: str) -> str:
    """Lower-cased and syntax-checked (no DNS lookups), or 400 ``auth.invalid_email``."""
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise BadRequest("auth.invalid_email") from None
    return checked.normalized.lower()


async def user_by_email(conn: Connection, email: str) -> Row | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM apprun_users WHERE email = $1", email)  # noqa: S608 - constant columns


async def user_by_id(conn: Connection, user_id: str) -> Row | None:
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM apprun_users WHERE id = $1", user_id)  # noqa: S608


async def insert_user(
    conn: Connection,
    *,
    email: str,
    password_hash: str | None,
    name: str | None = None,
    locale: str | None = None,
    platform_admin: bool = False,
    verified: bool = False,
) -> str:
    user_id, now = new_id(), utcnow()
    await conn.execute(
        "INSERT INTO apprun_users (id, email, password_hash, name, locale, data, is_platform_admin, "
        "email_verified_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $8)",
        user_id,
        email,
        password_hash,
        name,
        locale,
        platform_admin,
        now if verified else None,
        now,
    )
    return user_id


def dump_data(data: Any) -> str:
    if not isinstance(data, dict):
        raise BadRequest("auth.invalid_user_data")
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_DATA_BYTES:
        raise BadRequest("auth.invalid_user_data")
    return text


def user_view(row: Row) -> dict[str, Any]:
    """What a user may see of themselves (never the hash)."""
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "locale": row["locale"],
        "data": json.loads(row["data"] or "{}"),
        "email_verified": row["email_verified_at"] is not None,
        "is_platform_admin": bool(row["is_platform_admin"]),
        "disabled": row["disabled_at"] is not None,
        "last_login_at": isoformat(to_datetime(row["last_login_at"])),
        "created_at": isoformat(to_datetime(row["created_at"])),
        "updated_at": isoformat(to_datetime(row["updated_at"])),
    }
