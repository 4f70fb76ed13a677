"""Defining the data API's collections from a test, through the schema endpoints."""

from __future__ import annotations

from typing import Any

from tests.support.accounts import bearer

__all__ = ["define"]


async def define(client: Any, admin: dict[str, Any], definition: dict[str, Any], **query: Any) -> dict[str, Any]:
    """Create the collection ``definition`` as the platform admin ``admin``; returns it (asserting 2xx)."""
    reply = await client.post("/api/v1/collections", json=definition, headers=bearer(admin), params=query)
    assert reply.status_code in (200, 201), reply.text
    data: dict[str, Any] = reply.json()
    return data
