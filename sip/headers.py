"""Parsers for the structured header values the SIP core and the engine act on.

Error policy: a header the stack cannot work without (URI, From/To/Contact
name-addr, Via, CSeq, Event, the Subscription-State value, delta-seconds) raises
SipParseError(kind="header"), because the message is then unusable. An optional
parameter with a bad value (Subscription-State `expires`/`retry-after`) becomes None,
because the caller can still act on the rest and should decide the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .message import SipParseError, split_list, split_quoted

__all__ = [
    "MAX_DELTA_SECONDS",
    "CSeq",
    "Event",
    "NameAddr",
    "RetryAfter",
    "SipUri",
    "SubscriptionState",
    "Via",
    "format_params",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_event",
    "parse_name_addr",
    "parse_params",
    "parse_retry_after",
    "parse_route",
    "parse_subscription_state",
    "parse_tag",
    "parse_uri",
    "parse_via",
]

Params = dict[str, str | None]

#: RFC 3261 §20.19: larger delta-seconds are taken as this.
MAX_DELTA_SECONDS = 2**32 - 1


def _bad(message: str) -> SipParseError:
    return SipParseError("header", message)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        it = iter(inner)
        for ch in it:
            out.append(next(it, "") if ch == "\\" else ch)
        return "".join(out)
    return value


def parse_params(text: str) -> Params:
    """Parse `;k=v;flag` (leading `;` optional). Names are lower-cased, quoted values
    unquoted, flags map to None. Empty segments are skipped."""
    params: Params = {}
    for seg in text.split(";") if '"' not in text else split_quoted(text, ";"):
        if not seg:
            continue
        name, eq, value = seg.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if eq:
            value = value.strip()
            params[name] = _unquote(value) if value[:1] == '"' else value
        else:
            params[name] = None
    return params


def _quote_if_needed(value: str) -> str:
    if value and all(c.isalnum() or c in "-.!%*_+`'~:[]/@&$" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_params(params: Params) -> str:
    """Inverse of parse_params: `;k=v;flag`, quoting values that need it."""
    return "".join(
        f";{k}" if v is None else f";{k}={_quote_if_needed(v)}" for k, v in params.items()
    )


def _parse_port(text: str) -> int:
    if not text or len(text) > 5 or not (text.isascii() and text.isdigit()):
        raise _bad(f"bad port {text[:20]!r}")
    port = int(text)
    if port > 65535:
        raise _bad(f"port {port} out of range")
    return port


_BAD_HOST_CHARS = frozenset(' \t<>"[]@;,?')


def _parse_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _bad(f"unterminated IPv6 reference {text[:60]!r}")
        host = text[: close + 1]
        rest = text[close + 1 :]
        if not rest:
            return host.lower(), None
        if rest[0] != ":":
            raise _bad(f"junk after IPv6 reference {text[:60]!r}")
        return host.lower(), _parse_port(rest[1:])
    host, colon, port = text.partition(":")
    if not host or not _BAD_HOST_CHARS.isdisjoint(host):
        raise _bad(f"bad host {text[:60]!r}")
    return host.lower(), (_parse_port(port) if colon else None)


# The hot header classes below write their own __init__ (init=False): mypyc
# compiles it, where it would call the one the dataclasses module generates in
# Python (150 ns against 30 ns; docs/hot-path.md, round 7).


@dataclass(slots=True, init=False)
class SipUri:
    """A sip:/sips: URI split into the parts routing needs (RFC 3261 §19.1)."""

    scheme: str
    user: str | None
    host: str
    port: int | None
    params: Params
    headers: str

    def __init__(
        self,
        scheme: str,
        user: str | None,
        host: str,
        port: int | None,
        params: Params | None = None,
        *,
        headers: str = "",
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = headers

    @property
    def loose_route(self) -> bool:
        return "lr" in self.params

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{format_params(self.params)}{headers}"


def parse_uri(text: str) -> SipUri:
    """Parse a sip: or sips: URI, with or without surrounding <...>."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise _bad(f"not a SIP URI {text[:60]!r}")
    # '@' may only appear as the userinfo delimiter, so the last one ends the userinfo.
    at = rest.rfind("@")
    user: str | None = None
    if at >= 0:
        user = rest[:at]
        rest = rest[at + 1 :]
    rest, _, headers = rest.partition("?")
    hostport, semi, params = rest.partition(";")
    host, port = _parse_hostport(hostport)
    return SipUri(
        scheme, user, host, port, parse_params(params) if semi else {}, headers=headers
    )


@dataclass(slots=True, init=False)
class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header params."""

    display: str | None
    uri: str
    params: Params

    def __init__(self, display: str | None, uri: str, params: Params | None = None) -> None:
        self.display = display
        self.uri = uri
        self.params = {} if params is None else params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = ""
        if self.display is not None:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse name-addr (`"Name" <uri>;p`) or addr-spec (`uri;p`, where every `;`
    parameter belongs to the header, RFC 3261 §20.10)."""
    v = value.strip()
    if not v:
        raise _bad("empty address")
    display: str | None = None
    if v[0] == '"':
        i = 1
        while i < len(v):
            if v[i] == "\\":
                i += 2
                continue
            if v[i] == '"':
                break
            i += 1
        else:
            raise _bad(f"unterminated display name {v[:60]!r}")
        display = _unquote(v[: i + 1])
        rest = v[i + 1 :].lstrip()
        if not rest.startswith("<"):
            raise _bad(f"display name without <uri> {v[:60]!r}")
    else:
        lt = v.find("<")
        if lt < 0:
            uri, _, params = v.partition(";")
            uri = uri.strip()
            if not uri or " " in uri:
                raise _bad(f"bad addr-spec {v[:60]!r}")
            return NameAddr(None, uri, parse_params(params))
        display = v[:lt].strip() or None
        rest = v[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise _bad(f"unterminated <uri> {v[:60]!r}")
    uri = rest[1:gt].strip()
    if not uri:
        raise _bad("empty <>")
    tail = rest[gt + 1 :].strip()
    if tail and tail[0] != ";":
        raise _bad(f"junk after <uri> {v[:60]!r}")
    return NameAddr(display, uri, parse_params(tail))


def parse_route(value: str) -> list[NameAddr]:
    """A Route header value (RFC 3261 §20.34): one or more comma-separated
    name-addrs, each in <...> and holding a SIP URI."""
    entries = split_list(value)
    if not entries:
        raise _bad("empty Route")
    route: list[NameAddr] = []
    for entry in entries:
        if entry[0] not in '<"':
            raise _bad(f"Route entry without <uri> {entry[:60]!r}")
        addr = parse_name_addr(entry)
        parse_uri(addr.uri)
        route.append(addr)
    return route


def parse_tag(value: str) -> str | None:
    """``parse_name_addr(value).tag``, raising the same errors, without building the
    NameAddr for the usual ``<uri>;params`` form (the From and To of every NOTIFY)."""
    v = value.strip()
    if v[:1] == "<":
        gt = v.find(">")
        if gt > 1 and v[1:gt].strip():
            tail = v[gt + 1 :].strip()
            if not tail:
                return None
            if tail[0] == ";":
                return parse_params(tail).get("tag")
    return parse_name_addr(value).tag


@dataclass(slots=True, init=False)
class Via:
    """One Via entry (RFC 3261 §20.42)."""

    protocol: str
    transport: str
    host: str
    port: int | None
    params: Params

    def __init__(
        self,
        protocol: str,
        transport: str,
        host: str,
        port: int | None,
        params: Params | None = None,
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581); None if absent or a bare flag."""
        value = self.params.get("rport")
        if value is None or not (value.isascii() and value.isdigit()) or len(value) > 5:
            return None
        return int(value)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via entry; split a comma-joined header with Message.get_all first."""
    head, semi, params = value.strip().partition(";")
    slash = head.rfind("/")
    if slash < 0:
        raise _bad(f"bad Via {value[:60]!r}")
    protocol = "".join(head[:slash].split()).upper()
    parts = head[slash + 1 :].split(None, 1)
    if len(parts) != 2 or protocol.count("/") != 1:
        raise _bad(f"bad Via {value[:60]!r}")
    transport, sent_by = parts
    host, port = _parse_hostport(sent_by)
    return Via(protocol, transport.upper(), host, port, parse_params(params) if semi else {})


@dataclass(slots=True, init=False)
class CSeq:
    number: int
    method: str

    def __init__(self, number: int, method: str) -> None:
        self.number = number
        self.method = method

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse `CSeq: <number> <method>`; the number must fit 32 bits (RFC 3261 §8.1.1.5)."""
    parts = value.split()
    if len(parts) != 2:
        raise _bad(f"bad CSeq {value[:40]!r}")
    number, method = parts
    if len(number) > 10 or not (number.isascii() and number.isdigit()):
        raise _bad(f"bad CSeq number {number[:20]!r}")
    n = int(number)
    if n >= 2**32:
        raise _bad(f"CSeq number {n} out of range")
    return CSeq(n, method)


def parse_delta_seconds(value: str) -> int:
    """Expires / Min-Expires: a non-negative integer, clamped at 2**32-1."""
    v = value.strip()
    if not v or not (v.isascii() and v.isdigit()):
        raise _bad(f"bad delta-seconds {value[:20]!r}")
    if len(v) > 10:
        return MAX_DELTA_SECONDS
    return min(int(v), MAX_DELTA_SECONDS)


def _delta_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_delta_seconds(value)
    except SipParseError:
        return None


@dataclass(slots=True)
class RetryAfter:
    seconds: int
    comment: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def duration(self) -> int | None:
        return _delta_or_none(self.params.get("duration"))


def parse_retry_after(value: str) -> RetryAfter:
    """`Retry-After: 120 (comment);duration=60` (RFC 3261 §20.33)."""
    v = value.strip()
    i = 0
    while i < len(v) and v[i].isascii() and v[i].isdigit():
        i += 1
    seconds = parse_delta_seconds(v[:i]) if i else parse_delta_seconds(v)
    rest = v[i:].lstrip()
    comment: str | None = None
    if rest.startswith("("):
        close = rest.rfind(")")
        if close < 0:
            raise _bad(f"unterminated Retry-After comment {value[:60]!r}")
        comment = rest[1:close]
        rest = rest[close + 1 :].lstrip()
    if rest and rest[0] != ";":
        raise _bad(f"junk in Retry-After {value[:60]!r}")
    return RetryAfter(seconds, comment, parse_params(rest))


@dataclass(slots=True)
class SubscriptionState:
    """Subscription-State (RFC 6665 §8.2.3). `value` and `reason` are lower-cased
    (tokens are case-insensitive); unparseable `expires`/`retry_after` are None."""

    value: str
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None
    params: Params = field(default_factory=dict)


def parse_subscription_state(value: str) -> SubscriptionState:
    head, _, params_text = value.partition(";")
    state = head.strip().lower()
    if not state:
        raise _bad("empty Subscription-State")
    params = parse_params(params_text)
    reason = params.get("reason")
    return SubscriptionState(
        value=state,
        reason=reason.lower() if reason else None,
        expires=_delta_or_none(params.get("expires")),
        retry_after=_delta_or_none(params.get("retry-after")),
        params=params,
    )


@dataclass(slots=True)
class Event:
    """Event header (RFC 6665 §8.2.1). Package and id compare byte-by-byte, so they
    are kept exactly as received."""

    package: str
    id: str | None = None
    params: Params = field(default_factory=dict)

    def matches(self, other: Event) -> bool:
        return self.package == other.package and self.id == other.id

    def __str__(self) -> str:
        return f"{self.package}{format_params(self.params)}"


def parse_event(value: str) -> Event:
    head, _, params_text = value.partition(";")
    package = head.strip()
    if not package or any(c in package for c in " \t,"):
        raise _bad(f"bad Event {value[:40]!r}")
    params = parse_params(params_text)
    return Event(package, params.get("id"), params)
