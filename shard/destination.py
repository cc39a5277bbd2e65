"""Where a request goes, named before any socket is chosen.

The engine names a destination; the driver resolves a name (RFC 3263) and picks
the transport's socket or connection. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from enum import StrEnum

_FAMILIES: dict[str, int] = {}
FAMILIES_MAX = 4096
"""Hosts whose address family is remembered; the cache is emptied when full."""


def address_family(host: str) -> int:
    """AF_INET or AF_INET6 for an address literal (IPv6 brackets allowed), 0 for
    a name. Remembered per host: every datagram sent and every initial
    SUBSCRIBE asks, of a few hosts, and ``ipaddress.ip_address`` costs a few
    microseconds (~5 % of a busy shard when it was parsed per datagram)."""
    family = _FAMILIES.get(host)
    if family is None:
        try:
            version = ipaddress.ip_address(host.strip("[]")).version
            family = socket.AF_INET6 if version == 6 else socket.AF_INET
        except ValueError:
            family = 0
        if len(_FAMILIES) >= FAMILIES_MAX:
            _FAMILIES.clear()
        _FAMILIES[host] = family
    return family


class Transport(StrEnum):
    """RFC 3261 transports, spelled as in a Via (upper-cased there)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class Destination:
    """A next hop: ``host`` is an IP literal or a name still to resolve; ``port``
    None means the name's SRV records (or the transport's default port) decide."""

    transport: Transport
    host: str
    port: int | None

    @property
    def is_literal(self) -> bool:
        """The host is an IP address: nothing to look up."""
        return address_family(self.host) != 0
