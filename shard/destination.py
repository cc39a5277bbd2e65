"""Where a request goes, named before any socket is chosen.

The engine names a destination; the driver resolves a name (RFC 3263) and picks
the transport's socket or connection. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from enum import StrEnum

from ..sip.headers import parse_uri

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


_TRANSPORT_NAMES = frozenset(t.value for t in Transport)


def normalise_name(name: str) -> str:
    """Names compare case-insensitively and without the root's trailing dot."""
    return name.rstrip(".").lower()


def uri_target(uri: str) -> tuple[str, int | None, Transport | None, bool]:
    """Host (normalised), port, transport and "secure" of the place a ``sip:`` or
    ``sips:`` URI names: ``maddr`` wins over the host; ``;transport=`` is
    honoured (TLS for ``sips:`` whatever it says); brackets leave IPv6 hosts.
    Raises SipParseError for a URI that is not SIP."""
    parsed = parse_uri(uri)
    secure = parsed.scheme == "sips"
    host = (parsed.params.get("maddr") or parsed.host).strip("[]")
    transport: Transport | None = None
    if secure:
        transport = Transport.TLS
    else:
        named = (parsed.params.get("transport") or "").lower()
        if named in _TRANSPORT_NAMES:
            transport = Transport(named)
    return normalise_name(host), parsed.port, transport, secure


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
