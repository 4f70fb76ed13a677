"""A token signed with the real key but living longer than apprun issues tokens for is refused.

Forged with the server's own secret, for a real session of a real user, so
the signature and the session check pass and only the lifetime rule can
refuse it (SQLite and PostgreSQL).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.support.accounts import bearer, register

CHALLENGE = 'Bearer error="invalid_token"'


def _signed(app: Any, claims: dict[str, Any], **changes: Any) -> str:
    secret = str(app.state.runtime.settings.jwt_secret_value())
    return jwt.encode({**claims, **changes}, secret, algorithm="HS256")


def _lifetime_cases(ttl: int, leeway: int) -> dict[str, tuple[dict[str, Any], int]]:
    """Claim changes and the status they must get."""
    now = int(time.time())
    return {
        "exp 1e30": ({"iat": now, "exp": 1e30}, 401),
        "exp a year away": ({"iat": now, "exp": now + 365 * 86400}, 401),
        "lifetime just past ttl + leeway": ({"iat": now, "exp": now + ttl + leeway + 1}, 401),
        "iat an hour in the future": ({"iat": now + 3600, "exp": now + 3600 + ttl}, 401),
        "iat past the leeway": ({"iat": now + leeway + 60, "exp": now + ttl}, 401),
        # What apprun itself issues, re-signed: still good.
        "lifetime exactly ttl": ({"iat": now, "exp": now + ttl}, 200),
        "iat within the leeway": ({"iat": now + leeway // 2, "exp": now + ttl}, 200),
    }


@pytest.mark.parametrize("case", list(_lifetime_cases(900, 30)))
@pytest.mark.checklist(3)
async def test_token_lifetime_is_capped(client: Any, app: Any, case: str) -> None:
    settings = app.state.runtime.settings
    tokens = await register(client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    changes, status = _lifetime_cases(settings.auth_access_ttl, settings.auth_jwt_leeway)[case]
    r = await client.get("/auth/me", headers=bearer(_signed(app, claims, **changes)))
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["code"] == "auth.invalid_token"
        assert r.headers["www-authenticate"].startswith(CHALLENGE)
