"""Helpers for tests that need signed-in users."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["PASSWORD", "bearer", "login", "register", "unique_email"]

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


async def register(client: Any, email: str | None = None, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Register and return the token reply (asserting 201)."""
    body = {"email": email or unique_email(), "password": password, **extra}
    reply = await client.post("/auth/register", json=body)
    assert reply.status_code == 201, reply.text
    data: dict[str, Any] = reply.json()
    return data


async def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, Any]:
    reply = await client.post("/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}
