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

from apprun.app import create_app, wiring_of
from apprun.auth.passwords import hash_threads
from apprun.auth.service import Auth
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


@pytest.mark.parametrize(
    ("setting", "workers", "cores", "threads"),
    [
        (0, 2, 2, 1),  # two workers on two cores: one hash in flight per worker
        (0, 3, 2, 1),  # more workers than cores: still one each
        (0, 1, 2, 2),  # one worker: both cores
        (0, 2, 8, 4),
        (3, 2, 2, 3),  # AUTH_HASH_THREADS wins
    ],
)
def test_hashing_threads_share_the_cores_among_the_workers(
    setting: int, workers: int, cores: int, threads: int
) -> None:
    assert hash_threads(setting, workers, cores) == threads


async def test_the_worker_hashes_on_the_threads_the_setting_gives(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'apprun.db'}", http_workers=2, auth_hash_threads=3)
    app = create_app(settings, configure_logs=False)
    assert wiring_of(app).get(Auth).passwords.threads == 3
