"""Sign-in limits: a lockout that stops guessing but cannot lock the owner out.

Password attempts on one account are counted twice:

- per account *and client address* (``AUTH_RATE_LIMIT_ACCOUNT``, 10 per
  15 min): one client guessing is stopped, and only that client, so an
  attacker elsewhere cannot lock the owner out of their own account;
- per account from all addresses together (``AUTH_RATE_LIMIT_ACCOUNT_GLOBAL``,
  100 per hour): a ceiling for guessing spread over many addresses. Reaching
  it locks the account for everyone until its window ends, the owner too:
  that is the price of stopping distributed guessing, which is why it is
  ten times the per-client count and never reached by someone who merely
  mistypes.

The client address is the request's (the TCP peer, or ``X-Forwarded-For``
behind a trusted proxy only), so a client cannot pick a fresh one per try.

An attempt is counted *before* its password is checked and given back when
the password was right: counting only failures, after the check, would let
concurrent guesses all pass a check made before any of them was counted. A
right password resets the client's count and takes its attempt off the
account's; the failures of others stay on the account's count, so the
owner signing in does not forgive a distributed attacker. Unknown emails
are counted like known ones, so a 429 says nothing about who is registered.
"""

from __future__ import annotations

from apprun.auth.opaque import hash_token
from apprun.auth.settings import AuthSettings
from apprun.kernel.errors import TooManyRequests
from apprun.kernel.ratelimit import Limit, RateLimiter, Verdict

__all__ = ["SignInLimits"]


class SignInLimits:
    def __init__(self, limiter: RateLimiter, *, per_client: Limit, per_account: Limit) -> None:
        self.limiter = limiter
        self.per_client = per_client
        self.per_account = per_account

    @classmethod
    def from_settings(cls, settings: AuthSettings, limiter: RateLimiter) -> SignInLimits:
        return cls(
            limiter,
            per_client=Limit.parse(settings.auth_rate_limit_account),
            per_account=Limit.parse(settings.auth_rate_limit_account_global),
        )

    async def claim(self, email: str, client_ip: str | None) -> None:
        """Count one password attempt on ``email`` from ``client_ip``; 429 past either limit."""
        mine = await self.limiter.hit(self._client_key(email, client_ip), self.per_client)
        if not mine.allowed:
            # Not counted on the account: a client already stopped must not use up
            # the ceiling everyone shares (that would lock the owner out after all).
            raise _too_many(mine)
        everyone = await self.limiter.hit(self._account_key(email), self.per_account)
        if not everyone.allowed:
            raise _too_many(everyone)

    async def succeeded(self, email: str, client_ip: str | None) -> None:
        """The claimed attempt had the right password: it was no guess."""
        await self.limiter.reset(self._client_key(email, client_ip))
        await self.limiter.undo(self._account_key(email))

    @staticmethod
    def _account_key(email: str) -> str:
        return f"auth:login:account:{hash_token(email)}"

    @staticmethod
    def _client_key(email: str, client_ip: str | None) -> str:
        return f"auth:login:client:{hash_token(email)}:{client_ip or 'unknown'}"


def _too_many(verdict: Verdict) -> TooManyRequests:
    return TooManyRequests(
        "auth.too_many_attempts",
        params={"retry_after": verdict.retry_after},
        headers={"Retry-After": str(verdict.retry_after)},
    )
