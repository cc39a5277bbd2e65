"""Building our SUBSCRIBEs and naming where each goes (DUM's requester).

The initial SUBSCRIBE and its unconfirmed dialog are made from the same values,
so nothing is parsed back; in-dialog SUBSCRIBEs come from the dialog. Each
request comes with its :class:`Destination`: the outbound proxy
(``presence_outbound_proxy``) for an initial SUBSCRIBE and for an in-dialog one
whose dialog has no route set, else the first route or the remote target.
A name stays a name here; the driver resolves it (or reports that it cannot).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import B2BParams, SipSettings
from ..presence.packages import accept_types
from ..sip import ids
from ..sip.dialog import Dialog, build_initial_with_dialog, next_hop_uri
from ..sip.message import Message as SipMessage
from ..sip.message import Request, parse_header_line
from .call_id import label
from .destination import Destination, Transport
from .dialogset import PACKAGE
from .routing import Hop, hop_of

__all__ = ["ACCEPT", "SUPPORTED", "LocalEndpoint", "Requester", "udp"]

ACCEPT = accept_types(PACKAGE)
#: Any record may turn out to be a resource list (RFC 4662 §5.1): we take lists.
SUPPORTED = "eventlist"
_SUB_HEADERS_CACHE = 64  # distinct (Expires, package) pairs whose SUBSCRIBE headers are kept


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """The shard socket as written into Via and Contact (always an explicit host:port)."""

    host: str
    port: int

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def udp(hop: tuple[str, int]) -> Destination:
    return Destination(Transport.UDP, hop[0], hop[1])


def _header_lines(raw: str) -> tuple[tuple[str, str], ...]:
    """``additional_presence_headers`` as (name, value) pairs; the configuration
    parsed every line at load, so this cannot fail."""
    return tuple(
        parse_header_line(line) for line in raw.replace("\r\n", "\n").split("\n") if line.strip()
    )


class Requester:
    """Makes the shard's SUBSCRIBEs from the configuration and the local endpoint."""

    __slots__ = ("_contact", "_headers", "_proxy", "_sub_headers", "local", "params", "sip")

    def __init__(self, params: B2BParams, sip: SipSettings, local: LocalEndpoint) -> None:
        self.sip = sip
        self.local = local
        self._contact = f"<sip:{local.hostport}>"
        self.configure(params)

    def configure(self, params: B2BParams) -> None:
        """New [presence_b2b] parameters: they apply to the next request built."""
        self.params = params
        self._headers = _header_lines(params.additional_presence_headers)
        proxy = params.presence_outbound_proxy
        self._proxy: Hop | None = hop_of(proxy) if proxy else None
        self._sub_headers: dict[tuple[int, str], tuple[tuple[str, str], ...]] = {}

    def initial(
        self,
        record: str,
        subscriber: str,
        target: str | None,
        expires: int,
        package: str = PACKAGE,
        *,
        did: int = 0,
    ) -> tuple[Request, Dialog, Hop, tuple[str, str]]:
        """An out-of-dialog SUBSCRIBE to ``target`` (a 3xx Contact) or the record,
        its dialog, its destination and its transaction key; the Call-ID leads
        to dialog ``did`` (:mod:`.call_id`; 0: to none). Raises SipParseError
        or ValueError for a URI or header that cannot make a request."""
        branch = ids.new_branch()
        # The dialog holds the subscription's own strings (one copy of each, a
        # million subscriptions) and nothing is parsed back.
        req, dialog = build_initial_with_dialog(
            "SUBSCRIBE",
            target or record,
            from_uri=subscriber,
            from_tag=ids.new_tag(),
            call_id=ids.new_call_id(self.local.host, label(did) if did else ""),
            via_sent_by=self.local.hostport,
            branch=branch,
            to_uri=record,
            route=self.params.presence_route,
            headers=self._subscribe_headers(expires, package),
            canonical_headers=True,
        )
        dest = self._proxy or hop_of(next_hop_uri(req))
        return req, dialog, dest, (branch, "SUBSCRIBE")

    def in_dialog(
        self, dialog: Dialog, expires: int, package: str = PACKAGE
    ) -> tuple[Request, Hop]:
        """A refresh (or, with expires 0, an unsubscribe) in ``dialog``. The route
        set was checked when the dialog was confirmed."""
        dest = self._proxy if self._proxy is not None and not dialog.route_set else None
        req = dialog.build_request(
            "SUBSCRIBE",
            self._subscribe_headers(expires, package),
            via_sent_by=self.local.hostport,
            branch=ids.new_branch(),
        )
        return req, dest or hop_of(next_hop_uri(dialog))

    def _subscribe_headers(
        self, expires: int, package: str
    ) -> tuple[tuple[str, str], ...]:
        """The SUBSCRIBE's own headers, canonical and checked: made once per Expires
        value and package (a subscription asks for one Expires, raised only by a
        423's Min-Expires; Event and Accept follow the package)."""
        key = (expires, package)
        cached = self._sub_headers.get(key)
        if cached is None:
            headers = [("Contact", self._contact), ("Event", package)]
            accept = ACCEPT if package == PACKAGE else accept_types(package)
            if accept:
                headers.append(("Accept", accept))
            headers += [("Supported", SUPPORTED), ("Expires", str(expires))]
            if self.sip.user_agent:
                headers.append(("User-Agent", self.sip.user_agent))
            headers.extend(self._headers)
            cached = tuple(SipMessage(headers).headers)  # canonical names, no CR/LF
            if len(self._sub_headers) >= _SUB_HEADERS_CACHE:
                self._sub_headers.clear()
            self._sub_headers[key] = cached
        return cached
