"""Outbound requests to addresses a tenant chose: refuse the inside of the network.

A webhook URL is the classic server-side request forgery: a tenant names
``http://169.254.169.254/`` or ``http://127.0.0.1:5432/`` and apprun calls it
from inside the network. So every target is resolved first, and if any
address it resolves to is not a global unicast address — loopback,
link-local, private, unique-local, shared (100.64.0.0/10, where some clouds
keep their metadata service), multicast, reserved, unspecified, or an IPv6
address that embeds one of those (IPv4-mapped, 6to4) — the request is
refused, unless the host or the address is in ``WEBHOOK_ALLOWLIST``
(hostnames, addresses or CIDR networks). The request then goes to the
address that was checked (the ``Host`` header and TLS server name stay the
original host), so a DNS answer that changes between the check and the
connection (rebinding) cannot slip through. When a *name* resolves to a
refused address, the reply does not say which address: that would let
whoever registers webhooks map the inside of the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from apprun.kernel.errors import BadRequest

__all__ = ["Allowlist", "Resolver", "Target", "check_url", "resolve_target", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Host name and port → the addresses it resolves to (a port, so tests can play DNS rebinding).
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo``); OSError when the name does not resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: str
    #: The URL with the checked address in place of the host.
    pinned_url: str


class Allowlist:
    def __init__(self, entries: list[str]) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(address in net for net in self.networks)


def _internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return _internal(embedded)
    # Not `is_private` alone: 100.64.0.0/10 is neither private nor global, and
    # is where Alibaba Cloud answers metadata requests (100.100.100.200).
    return (
        not address.is_global
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def check_url(url: str) -> tuple[str, str, int]:
    """Syntax only: http(s), a host, no credentials. Returns (scheme, host, port).

    The host comes back lower-case and in its ASCII (IDNA) form, as DNS and
    the ``Host`` header want it.
    """
    if len(url) > 2000:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "longer than 2000 characters"})
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "an http(s) URL with a host is needed"})
    if parts.username is not None or parts.password is not None:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "no credentials in the URL"})
    try:
        port = parts.port
    except ValueError:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "bad port"}) from None
    if port == 0:  # `port or default` would quietly call port 80 instead
        raise BadRequest("events.invalid_webhook_url", details={"reason": "bad port"})
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise BadRequest("events.invalid_webhook_url", details={"reason": "bad host name"}) from None
    return parts.scheme, host, port if port is not None else (443 if parts.scheme == "https" else 80)


async def resolve_target(url: str, allowlist: Allowlist, resolver: Resolver = system_resolver) -> Target:
    """The checked address to call for ``url``, or 400 ``events.webhook_address_refused``."""
    scheme, host, port = check_url(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(found) for found in await resolver(host, port)]
        except (OSError, ValueError):
            raise BadRequest("events.webhook_unresolvable", params={"host": host}) from None
    if not addresses:
        raise BadRequest("events.webhook_unresolvable", params={"host": host})
    for address in addresses:
        if _internal(address) and not allowlist.allows(host, address):
            # The address a *name* resolved to stays out of the reply: it would
            # map the inside of the network for whoever registers webhooks.
            details = {"hint": "allow it with WEBHOOK_ALLOWLIST"}
            if literal is not None:
                details["address"] = str(address)
            raise BadRequest("events.webhook_address_refused", params={"host": host}, details=details)
    chosen = addresses[0]
    shown = f"[{chosen}]" if isinstance(chosen, ipaddress.IPv6Address) else str(chosen)
    parts = urlsplit(url)
    netloc = f"{shown}:{port}"
    pinned = parts._replace(netloc=netloc).geturl()
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(chosen), pinned_url=pinned)
