"""From a next-hop URI to what the driver is asked to reach (RFC 3263 §4).

An IP literal needs no DNS: it becomes a :class:`Destination` at once, its
transport from ``;transport=`` (TLS for ``sips:``, else UDP) and its port the
transport's default when the URI has none; this is the common case and the hot
path. A host name stays a :class:`SipTarget` for the driver's resolver, which
may still choose the transport (NAPTR) and the port (SRV).
"""

from __future__ import annotations

from typing import Final

from .destination import Destination, Transport, address_family, uri_target
from .resolver import SipTarget

__all__ = ["DEFAULT_PORTS", "Hop", "hop_of"]

#: Where a request goes: a concrete destination, or a name still to locate.
Hop = Destination | SipTarget

DEFAULT_PORTS: Final = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}


def hop_of(uri: str) -> Hop:
    """What ``uri`` (a next hop) asks the driver to reach. Raises SipParseError
    for a URI that is not SIP."""
    host, port, transport, secure = uri_target(uri)
    if not address_family(host):
        return SipTarget(host, port, transport, secure)
    transport = transport or Transport.UDP
    return Destination(transport, host, port or DEFAULT_PORTS[transport])
