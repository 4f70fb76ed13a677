"""Fixtures for the data API: a platform admin (helpers: tests/support/accounts.py, schema.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import make_admin


@pytest.fixture
async def admin(client: Any, db: Any) -> dict[str, Any]:
    return await make_admin(client, db)
