"""Where a request goes, named before any socket is chosen.

The engine names a destination; the driver resolves a name (RFC 3263) and picks
the transport's socket or connection. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


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
        try:
            ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return False
        return True
