"""From a next-hop URI to what the driver is asked to reach (RFC 3263 §4).

An IP literal needs no DNS: it becomes a :class:`Destination` at once, its
transport from ``;transport=`` (TLS for ``sips:``, else UDP) and its port the
transport's default when the URI has none; this is the common case and the hot
path. A host name stays a :class:`SipTarget` for the driver's resolver, which
may still choose the transport (NAPTR) and the port (SRV).
"""

from __future__ import annotations

from typing import Final

from .destination import Destination, Transport
from .resolver import SipTarget

__all__ = ["DEFAULT_PORTS", "Hop", "hop_of"]

#: Where a request goes: a concrete destination, or a name still to locate.
Hop = Destination | SipTarget

DEFAULT_PORTS: Final = {Transport.UDP: 5060, Transport.TCP: 5060, Transport.TLS: 5061}


def hop_of(uri: str) -> Hop:
    """What ``uri`` (a next hop) asks the driver to reach. Raises SipParseError
    for a URI that is not SIP."""
    target = SipTarget.from_uri(uri)
    if not target.is_literal:
        return target
    transport = target.transport or Transport.UDP
    return Destination(transport, target.host, target.port or DEFAULT_PORTS[transport])
