"""The unknown-user dummy hash does the work a real verification does (checklist 7, issue 10).

An unknown email must cost what a wrong password costs. Timing is not
asserted (no timing in the suite); the work is: the argon2 hasher is called
for the unknown email with a real argon2id hash whose parameters are the
configured ones, the same as a stored hash's. Both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import VerifyMismatchError
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.modules import Settings
from tests.support.accounts import register, unique_email

WRONG = "not the password at all"


@pytest.mark.checklist(7)
async def test_an_unknown_email_is_verified_against_a_real_hash_of_the_configured_cost(
    make_settings: Callable[..., Settings], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stronger than the defaults, so a dummy made with fixed or default parameters shows.
    settings = make_settings(database_url=database_url, auth_argon2_time_cost=3, auth_argon2_memory_kib=20 * 1024)
    verified: list[str] = []
    original = PasswordHasher.verify

    def spy(self: PasswordHasher, encoded: str | bytes, password: str | bytes) -> Any:
        verified.append(encoded if isinstance(encoded, str) else encoded.decode())
        return original(self, encoded, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    async with AsyncTestClient(app=create_app(settings, configure_logs=False), raise_server_exceptions=False) as c:
        email = (await register(c))["user"]["email"]
        wrong = await c.post("/auth/login", json={"email": email, "password": WRONG})
        unknown = await c.post("/auth/login", json={"email": unique_email("nobody"), "password": WRONG})
    assert wrong.status_code == unknown.status_code == 400

    assert len(verified) == 2, "the unknown email was not checked against a hash"
    stored, dummy = verified
    assert dummy != stored
    params = extract_parameters(dummy)
    assert params == extract_parameters(stored)
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (Type.ID, 3, 20 * 1024, 1)
    # A hash that verifies (a mismatch, after the work), not one argon2 refuses to parse at once.
    with pytest.raises(VerifyMismatchError):
        original(PasswordHasher(), dummy, WRONG)
