"""Outbound requests to addresses a tenant chose: refuse the inside of the network.

A webhook URL is the classic server-side request forgery: a tenant names
``http://169.254.169.254/`` or ``http://127.0.0.1:5432/`` and apprun calls it
from inside the network. So every target is resolved first, and if any
address it resolves to is loopback, link-local, private, unique-local,
multicast, reserved or unspecified, the request is refused — unless the host
or the address is in ``WEBHOOK_ALLOWLIST`` (hostnames, addresses or CIDR
networks). The request then goes to the address that was checked (the
``Host`` header and TLS server name stay the original host), so a DNS
answer that changes between the check and the connection (rebinding) cannot
slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from apprun.kernel.errors import BadRequest

__all__ = ["Allowlist", "Target", "resolve_target"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def check_url(url: str) -> tuple[str, str, int]:
    """Syntax only: http(s), a host, no credentials. Returns (scheme, host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "an http(s) URL with a host is needed"})
    if parts.username or parts.password:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "no credentials in the URL"})
    if len(url) > 2000:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "longer than 2000 characters"})
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("events.invalid_webhook_url", details={"reason": "bad port"}) from None
    return parts.scheme, parts.hostname, port


async def resolve_target(url: str, allowlist: Allowlist) -> Target:
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
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise BadRequest("events.webhook_unresolvable", params={"host": host}) from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise BadRequest("events.webhook_unresolvable", params={"host": host})
    for address in addresses:
        if _internal(address) and not allowlist.allows(host, address):
            raise BadRequest(
                "events.webhook_address_refused",
                params={"host": host},
                details={"address": str(address), "hint": "allow it with WEBHOOK_ALLOWLIST"},
            )
    chosen = addresses[0]
    shown = f"[{chosen}]" if isinstance(chosen, ipaddress.IPv6Address) else str(chosen)
    parts = urlsplit(url)
    netloc = f"{shown}:{port}"
    pinned = parts._replace(netloc=netloc).geturl()
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(chosen), pinned_url=pinned)
