"""Passwords: argon2id, hashed off the event loop, upgraded on login.

Parameters default to OWASP's recommendation for argon2id (m = 19 MiB,
t = 2, p = 1) and can only be raised by configuration. Hashing and
verification run on a small dedicated thread pool (argon2-cffi releases the
GIL), so a burst of logins never blocks the loop nor starves the database's
threads. Unknown emails are verified against a dummy hash so that "no such
user" and "wrong password" take the same time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from apprun.kernel.errors import BadRequest
from apprun.kernel.memory import unmap_large_blocks

__all__ = ["PasswordPolicy", "Passwords", "Verification"]

OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1
MAX_PASSWORD_BYTES = 1024  # argon2 takes any length; a cap keeps requests cheap to refuse


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    #: A fresh hash when the stored one used weaker parameters (store it).
    new_hash: str | None = None


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    min_length: int = 8
    blocklist: frozenset[str] = frozenset()

    @classmethod
    def from_file(cls, min_length: int, path: Path | None) -> PasswordPolicy:
        words: frozenset[str] = frozenset()
        if path is not None:
            words = frozenset(
                line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            )
        return cls(min_length=min_length, blocklist=words)

    def check(self, password: str, email: str | None = None) -> None:
        """Raise `BadRequest` (``auth.weak_password``) with the reason in details."""
        problems: list[str] = []
        if len(password) < self.min_length:
            problems.append(f"shorter than {self.min_length} characters")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            problems.append(f"longer than {MAX_PASSWORD_BYTES} bytes")
        if email and password.strip().lower() == email.strip().lower():
            problems.append("the same as the email address")
        if password.lower() in self.blocklist:
            problems.append("too common (on the blocklist)")
        if problems:
            raise BadRequest(
                "auth.weak_password",
                params={"min_length": self.min_length},
                details={"problems": problems},
            )


def hash_threads(setting: int, workers: int, cores: int | None = None) -> int:
    """Hashing threads per worker: ``AUTH_HASH_THREADS``, or with 0 the cores shared among the workers.

    argon2id is CPU-bound and releases the GIL, so hashing threads beyond the
    cores add no logins per second, only memory: each hash in flight holds
    its 19 MiB. Two workers on two cores hash on one thread each.
    """
    if setting > 0:
        return setting
    cores = cores or os.cpu_count() or 1
    return max(1, -(-cores // max(workers, 1)))


class Passwords:
    """argon2id hashing on a thread pool."""

    def __init__(
        self,
        *,
        memory_kib: int = OWASP_MEMORY_KIB,
        time_cost: int = OWASP_TIME_COST,
        parallelism: int = OWASP_PARALLELISM,
        threads: int = 2,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=max(time_cost, OWASP_TIME_COST),
            memory_cost=max(memory_kib, OWASP_MEMORY_KIB),
            parallelism=max(parallelism, OWASP_PARALLELISM),
            type=Type.ID,
        )
        #: Hashes in flight at most (each holds its ``memory_kib`` while it runs).
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="apprun-argon2")
        unmap_large_blocks()  # each hash's 19 MiB goes back to the OS when it is done
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> Verification:
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            password = password[:MAX_PASSWORD_BYTES]
        target = stored or self._dummy
        try:
            self._hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(ok=False)
        if stored is None:  # the dummy matched: impossible by construction, but never a login
            return Verification(ok=False)
        if self._hasher.check_needs_rehash(stored):
            return Verification(ok=True, new_hash=self._hasher.hash(password))
        return Verification(ok=True)

    async def verify(self, stored: str | None, password: str) -> Verification:
        """Check ``password`` against ``stored`` (None: an unknown user, same cost)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify, stored, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
