"""Outbound safety: the allow/deny list every call, document fetch and redirect hop passes before connecting.

Entries are host names (`api.example.com`), wildcards (`*.example.com`, which also matches `example.com`), IP
addresses or CIDRs. A host name is resolved and every address it resolves to is checked, so a name that points at
a denied network is denied. Deny wins over allow; an empty allow list allows every host that is not denied. The
check happens before each connection, not at connect time: a name whose DNS answer changes between the check and
the connection (DNS rebinding) is not caught — put such hosts behind an egress proxy if that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from ._errors import AuthorizationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Rules:
    """One list: networks and host-name patterns."""

    __slots__ = ("names", "networks")

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[Network] = []
        self.names: list[str] = []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                self.names.append(text)

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)

    def name_matches(self, host: str) -> bool:
        return any(_name_match(pattern, host) for pattern in self.names)

    def address_matches(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def _name_match(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host == pattern[2:] or host.endswith(pattern[1:])
    return host == pattern


class OutboundPolicy:
    """Decides whether a host may be reached; `check` raises the spec's authorization error (403) when not."""

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        self._allow = _Rules(allow)
        self._deny = _Rules(deny)

    async def check(self, host: str) -> None:
        """Raise AuthorizationError when `host` (a name or an address) may not be reached."""
        host = host.strip("[]").lower().rstrip(".")
        if self._deny.name_matches(host):
            raise _denied(host, "it is on the deny list")
        needs_addresses = self._deny.networks or self._allow.networks
        addresses = await _resolve(host) if needs_addresses else []
        for address in addresses:
            if self._deny.address_matches(address):
                raise _denied(host, f"{address} is on the deny list")
        if self._allow and not self._allowed(host, addresses):
            raise _denied(host, "it is not on the allow list")

    def _allowed(self, host: str, addresses: list[Address]) -> bool:
        if self._allow.name_matches(host):
            return True
        return bool(addresses) and all(self._allow.address_matches(a) for a in addresses)


def _denied(host: str, why: str) -> AuthorizationError:
    return AuthorizationError("Outbound host denied", detail=f"{host!r} may not be called: {why}")


async def _resolve(host: str) -> list[Address]:
    """The addresses of `host`; [] when it does not resolve (the connection attempt then reports that)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    # Scoped IPv6 addresses carry `%iface`, which ip_address rejects.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
