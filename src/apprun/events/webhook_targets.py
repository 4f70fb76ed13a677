"""Where a webhook may point: the one check registration and delivery share.

A URL is checked against server-side request forgery (see
`apprun.events.ssrf`) when a webhook is registered or changed, and again
before every attempt to send to it. Both sides consult the same
`WebhookTargets`, so the resolver it holds (a port: tests replace it to play
DNS rebinding) is the one asked at both moments.
"""

from __future__ import annotations

from apprun.events.ssrf import Allowlist, Resolver, Target, resolve_target, system_resolver

__all__ = ["WebhookTargets"]


class WebhookTargets:
    def __init__(self, allowlist: Allowlist, resolver: Resolver = system_resolver) -> None:
        self.allowlist = allowlist
        #: Asked at registration and again before every attempt.
        self.resolver = resolver

    async def resolve(self, url: str) -> Target:
        """The target to send to, with its checked address pinned; a 400 `ApiError` when refused."""
        return await resolve_target(url, self.allowlist, self.resolver)
