"""UAC-side dialog state of a SUBSCRIBE usage (RFC 3261 §12, RFC 6665 §4.1.2.4).

The dialog knows who the peer is and how to reach it: tags, CSeqs, remote target and
route set. It builds in-dialog requests and computes the next hop without DNS: a
host name is returned as is for the I/O layer to resolve (A/AAAA); RFC 3263 SRV and
NAPTR lookups are out of scope.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from .headers import parse_cseq, parse_name_addr, parse_tag, parse_uri
from .message import Message, Request, Response, SipParseError, split_list

__all__ = [
    "CSeqOutOfOrder",
    "Dialog",
    "build_initial_request",
    "build_initial_with_dialog",
    "next_hop",
    "parse_route_set",
    "resolve_uri",
]


def _uri_of(value: str) -> str:
    return parse_name_addr(value).uri


def parse_route_set(route: str | Sequence[str]) -> list[str]:
    """URIs of a route given as one header value (`<sip:a;lr>, <sip:b;lr>`) or a
    list of entries, in the order given."""
    entries = split_list(route) if isinstance(route, str) else list(route)
    return [_uri_of(e) for e in entries if e.strip()]


def _tag(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        raise SipParseError("missing-header", f"no {name} header")
    return parse_tag(value)


def _contact_uri(msg: Message) -> str | None:
    contacts = msg.get_all("Contact")
    return _uri_of(contacts[0]) if contacts else None


def _same_target(value: str, target: str) -> bool:
    """Is the (first) Contact header value `value` exactly `<target>`? Then
    `_contact_uri` would give `target` back: without a comma the value is one
    entry, and without a `>` inside, the URI is all that lies between the brackets."""
    return (
        len(value) == len(target) + 2
        and value[0] == "<"
        and value[-1] == ">"
        and value[1:-1] == target
        and ">" not in target
        and "," not in target
        and target == target.strip()
        and bool(target)
    )


class CSeqOutOfOrder(Exception):  # noqa: N818 (a condition, not a bug)
    """An in-dialog request with a CSeq below the last one: answer 500."""

    def __init__(self, number: int, last: int) -> None:
        super().__init__(f"CSeq {number} is below the last one, {last}")


def _check_routable(routes: Sequence[str], target: str) -> None:
    """Raise SipParseError unless every route and the target name a next hop."""
    for uri in (*routes, target):
        resolve_uri(uri)


def _strip_uri_headers(uri: str) -> str:
    # A URI used as Request-URI may not carry ?headers (RFC 3261 §19.1.5).
    q = uri.find("?")
    return uri if q < 0 else uri[:q]


def _routing(target: str, route_set: Sequence[str]) -> tuple[str, list[str]]:
    """Request-URI and Route values for `target` via `route_set` (RFC 3261 §12.2.1.1)."""
    if not route_set:
        return target, []
    if parse_uri(route_set[0]).loose_route:
        return target, [f"<{r}>" for r in route_set]
    # Strict router: it gets the Request-URI, the target travels as the last Route.
    return _strip_uri_headers(route_set[0]), [f"<{r}>" for r in route_set[1:]] + [f"<{target}>"]


def _build(
    method: str,
    request_uri: str,
    *,
    routes: Sequence[str],
    from_value: str,
    to_value: str,
    call_id: str,
    cseq: int,
    via_sent_by: str,
    branch: str,
    transport: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    max_forwards: int,
    canonical: bool = False,
) -> Request:
    req = Request(method, request_uri)
    h = req.headers
    h.append(("Via", f"SIP/2.0/{transport} {via_sent_by};branch={branch}"))
    h.append(("Max-Forwards", str(max_forwards)))
    h.extend(("Route", r) for r in routes)
    h.append(("From", from_value))
    h.append(("To", to_value))
    h.append(("Call-ID", call_id))
    h.append(("CSeq", f"{cseq} {method}"))
    if canonical:  # already (canonical name, checked value), Content-Length left out
        h.extend(headers)
    else:
        for name, value in headers:
            req.add(name, value)
    req.body = body
    return req


def build_initial_request(
    method: str,
    request_uri: str,
    *,
    from_uri: str,
    from_tag: str,
    call_id: str,
    via_sent_by: str,
    branch: str,
    to_uri: str | None = None,
    cseq: int = 1,
    route: str | Sequence[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    transport: str = "UDP",
    max_forwards: int = 70,
) -> Request:
    """An out-of-dialog request with a preset route set (e.g. `presence_route`).

    The preset route is used in the order given, never reversed. The outbound proxy,
    if any, is not part of the message: pass it to `next_hop`.
    """
    target = request_uri
    ruri, routes = _routing(target, parse_route_set(route))
    return _build(
        method,
        ruri,
        routes=routes,
        from_value=f"<{from_uri}>;tag={from_tag}",
        to_value=f"<{to_uri or request_uri}>",
        call_id=call_id,
        cseq=cseq,
        via_sent_by=via_sent_by,
        branch=branch,
        transport=transport,
        headers=headers,
        body=body,
        max_forwards=max_forwards,
    )


def build_initial_with_dialog(
    method: str,
    request_uri: str,
    *,
    from_uri: str,
    from_tag: str,
    call_id: str,
    via_sent_by: str,
    branch: str,
    to_uri: str,
    route: str | Sequence[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    canonical_headers: bool = False,
) -> tuple[Request, Dialog]:
    """`build_initial_request` (CSeq 1, UDP) and the unconfirmed dialog that
    `Dialog.from_request` would read back from it, made from the same values
    instead of parsing the request: local URI and tag, remote URI, the
    Request-URI as remote target, the Route URIs in order as route set.

    ``canonical_headers``: every name is canonical and every value free of CR
    and LF (e.g. checked once by a ``Message.add``); they are copied as they are.
    """
    ruri, routes = _routing(request_uri, parse_route_set(route))
    req = _build(
        method,
        ruri,
        routes=routes,
        from_value=f"<{from_uri}>;tag={from_tag}",
        to_value=f"<{to_uri}>",
        call_id=call_id,
        cseq=1,
        via_sent_by=via_sent_by,
        branch=branch,
        transport="UDP",
        headers=headers,
        body=b"",
        max_forwards=70,
        canonical=canonical_headers,
    )
    dialog = Dialog(
        call_id=call_id,
        local_tag=from_tag,
        local_uri=from_uri,
        remote_uri=to_uri,
        remote_target=ruri,
        # _routing wrote each route as "<uri>": its URI is what lies inside.
        route_set=[r[1:-1] for r in routes],
    )
    return req, dialog


class Dialog:
    """Dialog state for one subscription, seen from the subscriber (UAC) side."""

    __slots__ = (
        "_routes",
        "call_id",
        "confirmed",
        "keep_preset_route",
        "local_cseq",
        "local_tag",
        "local_uri",
        "remote_cseq",
        "remote_tag",
        "remote_target",
        "remote_uri",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        route_set: Sequence[str] = (),
        local_cseq: int = 1,
        remote_tag: str | None = None,
        remote_cseq: int | None = None,
        keep_preset_route: bool = False,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_tag = remote_tag
        self.remote_target = remote_target
        self._routes = tuple(route_set)
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.confirmed = False
        #: The original kept `presence_route` for in-dialog requests when the peer sent
        #: no Record-Route; RFC 3261 empties the route set then. False = RFC.
        self.keep_preset_route = keep_preset_route

    @classmethod
    def from_request(
        cls,
        request: Request,
        *,
        route_set: Sequence[str] | None = None,
        remote_target: str | None = None,
        keep_preset_route: bool = False,
    ) -> Dialog:
        """An unconfirmed dialog for the initial SUBSCRIBE we sent.

        The route set is read from the request's Route headers and the target is its
        Request-URI, which holds for a loose preset route; with a strict first hop
        pass `route_set` and `remote_target` as given to build_initial_request.
        """
        from_value = request.get("From")
        to_value = request.get("To")
        call_id = request.get("Call-ID")
        cseq_value = request.get("CSeq")
        if from_value is None or to_value is None or call_id is None or cseq_value is None:
            raise SipParseError("missing-header", "request lacks From, To, Call-ID or CSeq")
        from_addr = parse_name_addr(from_value)
        if not from_addr.tag:
            raise SipParseError("header", "From without tag")
        routes = parse_route_set(request.get_all("Route")) if route_set is None else list(route_set)
        return cls(
            call_id=call_id,
            local_tag=from_addr.tag,
            local_uri=from_addr.uri,
            remote_uri=parse_name_addr(to_value).uri,
            remote_target=request.uri if remote_target is None else remote_target,
            route_set=routes,
            local_cseq=parse_cseq(cseq_value).number,
            keep_preset_route=keep_preset_route,
        )

    @property
    def route_set(self) -> list[str]:
        """Route URIs in the order requests visit them (a copy: assign to change it).

        Stored as a tuple, so the usual empty route set costs nothing per dialog."""
        return list(self._routes)

    @route_set.setter
    def route_set(self, routes: list[str]) -> None:  # compiled, a setter takes the getter's type
        self._routes = tuple(routes)

    @property
    def id(self) -> tuple[str, str, str | None]:
        """(Call-ID, local tag, remote tag), as RFC 3261 §12 identifies a dialog."""
        return self.call_id, self.local_tag, self.remote_tag

    def _new_route_set(self, record_route: list[str], *, reverse: bool) -> tuple[str, ...]:
        if record_route:
            routes = parse_route_set(record_route)
            return tuple(routes[::-1] if reverse else routes)
        return self._routes if self.keep_preset_route else ()

    def _new_target(self, msg: Message) -> str:
        value = msg.get("Contact")
        if value is not None and _same_target(value, self.remote_target):
            return self.remote_target  # most refreshes repeat the Contact: nothing to parse
        target = _contact_uri(msg)
        if target is None:
            return self.remote_target
        # Many dialogs share a notifier's Contact; interned, they share one string
        # (interned strings are freed with their last user, so this cannot leak).
        return sys.intern(target)

    def _refresh_target(self, msg: Message) -> None:
        target = self._new_target(msg)
        if target is not self.remote_target:
            _check_routable((), target)
            self.remote_target = target

    def _establish(self, msg: Message, tag: str, *, reverse: bool) -> None:
        """Take the remote tag, route set and target, all or nothing: a route or
        target that could not carry a request refuses the dialog here rather than
        failing every later request."""
        routes = self._new_route_set(msg.get_all("Record-Route"), reverse=reverse)
        target = self._new_target(msg)
        _check_routable(routes, target)
        self.remote_tag = tag
        self._routes = routes
        self.remote_target = target
        self.confirmed = True

    def confirm(self, response: Response) -> bool:
        """Apply a 2xx to the SUBSCRIBE. The first one (or a NOTIFY before it)
        establishes the dialog; later ones only refresh the target. Returns False for
        a 2xx from another fork (different To tag), which is ignored. A 2xx without
        a To tag, or whose Record-Route or Contact is unusable, raises SipParseError
        and leaves the dialog as it was."""
        if not 200 <= response.status < 300:
            raise ValueError("only a 2xx confirms a dialog")
        tag = _tag(response, "To")
        if not tag:
            raise SipParseError("header", "2xx without To tag")
        if self.confirmed:
            if tag != self.remote_tag:
                return False
            self._refresh_target(response)
            return True
        self._establish(response, tag, reverse=True)
        return True

    def confirm_from_notify(self, notify: Request) -> None:
        """A NOTIFY that arrives before the 2xx creates the dialog (RFC 6665 §4.1.2.4):
        remote tag from its From, route set from its Record-Route in order, target
        from its Contact."""
        tag = _tag(notify, "From")
        if not tag:
            raise SipParseError("header", "NOTIFY without From tag")
        cseq = notify.get("CSeq")
        if cseq is None:
            raise SipParseError("missing-header", "no CSeq header")
        number = parse_cseq(cseq).number
        self._establish(notify, tag, reverse=False)
        self.remote_cseq = number

    def matches(self, request: Request) -> bool:
        """Does this in-dialog request (NOTIFY) belong here? Before confirmation the
        remote tag is unknown, so Call-ID and our tag decide (RFC 6665 §4.1.2.4)."""
        if request.get("Call-ID") != self.call_id:
            return False
        try:
            if _tag(request, "To") != self.local_tag:
                return False
            return self.remote_tag is None or _tag(request, "From") == self.remote_tag
        except SipParseError:
            return False

    def update_from_request(self, request: Request) -> bool:
        """Target refresh by an in-dialog request. Returns False for a repeated
        CSeq (the dialog is left alone, the request is still valid); raises
        :class:`CSeqOutOfOrder` for a lower one, which RFC 3261 §12.2.2 rejects."""
        value = request.get("CSeq")
        if value is None:
            raise SipParseError("missing-header", "no CSeq header")
        number = parse_cseq(value).number
        last = self.remote_cseq
        if last is not None and number <= last:
            if number < last:
                raise CSeqOutOfOrder(number, last)
            return False
        self._refresh_target(request)
        self.remote_cseq = number
        return True

    def update_from_response(self, response: Response) -> None:
        """Target refresh by the 2xx to a refresh SUBSCRIBE."""
        if 200 <= response.status < 300:
            self._refresh_target(response)

    def build_request(
        self,
        method: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        via_sent_by: str,
        branch: str,
        transport: str = "UDP",
        max_forwards: int = 70,
    ) -> Request:
        """An in-dialog request with the next local CSeq (RFC 3261 §12.2.1.1)."""
        self.local_cseq += 1
        ruri, routes = _routing(self.remote_target, self._routes)
        to_value = f"<{self.remote_uri}>"
        if self.remote_tag:
            to_value += f";tag={self.remote_tag}"
        return _build(
            method,
            ruri,
            routes=routes,
            from_value=f"<{self.local_uri}>;tag={self.local_tag}",
            to_value=to_value,
            call_id=self.call_id,
            cseq=self.local_cseq,
            via_sent_by=via_sent_by,
            branch=branch,
            transport=transport,
            headers=headers,
            body=body,
            max_forwards=max_forwards,
        )

    def __repr__(self) -> str:
        state = "confirmed" if self.confirmed else "early"
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {state}>"


def resolve_uri(uri: str) -> tuple[str, int]:
    """Host and port to send to for a SIP URI, without DNS: `maddr` wins over the
    host, IPv6 brackets are dropped, the port defaults to 5060 (5061 for sips)."""
    parsed = parse_uri(uri)
    host = parsed.params.get("maddr") or parsed.host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = parsed.port if parsed.port is not None else (5061 if parsed.scheme == "sips" else 5060)
    return host, port


def next_hop(target: Request | Dialog, *, outbound_proxy: str | None = None) -> tuple[str, int]:
    """Where to send a request (RFC 3261 §8.1.2), without DNS: the host and port
    of :func:`next_hop_uri`."""
    return resolve_uri(next_hop_uri(target, outbound_proxy=outbound_proxy))


def next_hop_uri(target: Request | Dialog, *, outbound_proxy: str | None = None) -> str:
    """The URI a request goes to first (RFC 3261 §8.1.2): the outbound proxy if
    set, else the first route, else the Request-URI (or remote target); RFC 3263
    locates the server from it.

    For a Request, a first Route without `;lr` means a strict router already sits in
    the Request-URI, so the Request-URI is the next hop. A strict first hop followed
    by loose ones cannot be told from loose routing by looking at the message; a
    Dialog knows its route set, so pass the Dialog for such routes.
    """
    if outbound_proxy:
        return _uri_of(outbound_proxy)
    if isinstance(target, Dialog):
        route_set = target._routes
        return route_set[0] if route_set else target.remote_target
    routes = target.get_all("Route")
    if routes:
        first = _uri_of(routes[0])
        if parse_uri(first).loose_route:
            return first
    return target.uri
