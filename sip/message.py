"""SIP message model, parser and serialiser (RFC 3261 §7, §20).

Kept split-based and allocation-light: the shard parses every NOTIFY it gets, so this
is the hottest code in the process. Header values are stored as received (one entry
per header line); list headers are only comma-split when asked for with `get_all`.
Content-Length is never stored: it is derived from `body` on output, so a message
can never carry a stale or duplicated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "Message",
    "Request",
    "Response",
    "SipParseError",
    "canonical_name",
    "parse_header_line",
    "parse_message",
    "require",
    "split_list",
    "split_quoted",
]


class SipParseError(ValueError):
    """Anything wrong with bytes from the wire.

    `kind` is short and stable so that callers can count errors by it: "empty",
    "start-line", "header", "content-length", "too-large", "truncated",
    "missing-header".
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        #: A request or response whose body fell short of its Content-Length:
        #: its headers parsed, so a request can still get its 400.
        self.partial: Request | Response | None = None


#: RFC 3261 §7.3.3 and later RFCs' compact forms.
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
}

_KNOWN_NAMES = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Organization", "Path", "Priority",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Record-Route",
    "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route", "RSeq",
    "Server", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
    "Via", "Warning", "WWW-Authenticate",
)  # fmt: skip

_CANON: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}
_CANON.update(COMPACT_FORMS)
#: Names already in their canonical spelling (what this code and most peers write):
#: found without lower-casing first.
_EXACT: dict[str, str] = {n: n for n in _KNOWN_NAMES}
_CANON_CACHE_LIMIT = 4096
_CANON_BUILTIN = len(_CANON)

#: Headers whose comma-separated values are separate entries (RFC 3261 §7.3.1).
#: Authentication headers are absent on purpose: their commas separate parameters.
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "Path", "Proxy-Require", "Record-Route", "Require",
        "Route", "Supported", "Unsupported", "Via", "Warning",
    }
)  # fmt: skip

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_MAX_HEADERS = 256


def canonical_name(name: str) -> str:
    """Map a header name as received to the one spelling stored and compared."""
    canon = _EXACT.get(name)
    if canon is not None:
        return canon
    key = name.lower()
    canon = _CANON.get(key)
    if canon is None:
        canon = "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
        # Unknown names come from peers: cache a bounded number of valid ones only.
        if len(_CANON) < _CANON_BUILTIN + _CANON_CACHE_LIMIT and _TOKEN_CHARS.issuperset(key):
            _CANON[key] = canon
    return canon


def split_quoted(text: str, sep: str) -> list[str]:
    """Split ``text`` at every ``sep`` outside double quotes (backslash escapes
    honoured) and outside <...>, the one splitter of the SIP core; parts are kept
    as they are, empty ones included."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    in_quotes = in_angle = escaped = False
    for i, ch in enumerate(text):
        if in_quotes:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
        elif ch == sep:
            if not in_angle:
                parts.append(text[start:i])
                start = i + 1
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """The entries of a list header value: split at commas outside quotes and
    <...>, stripped, empty ones dropped."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    return [p for p in (part.strip() for part in split_quoted(value, ",")) if p]


def _check_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("header values must not contain CR or LF")
    return value


class Message:
    """Headers and body shared by requests and responses.

    `headers` is the message: one (canonical name, value) entry per header line, in
    order. `get` answers from an index of first values that is built on the first
    lookup and rebuilt whenever the list's length changed; `add`, `set` and
    `remove` keep it right. Replacing an entry in place (`headers[i] = ...`) is the
    one change it cannot see: use `set` for that.
    """

    __slots__ = ("_first", "_first_n", "body", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = []
        self._first: dict[str, str] | None = None
        self._first_n = 0
        if headers is not None:
            for name, value in headers:
                self.add(name, value)
        self.body = body

    def first_values(self) -> Mapping[str, str]:
        """Canonical name -> first value, for every header present (read only)."""
        first = self._first
        headers = self.headers
        if first is None or self._first_n != len(headers):
            # reversed(): the first of repeated names is the one dict() keeps.
            first = self._first = dict(reversed(headers))
            self._first_n = len(headers)
        return first

    def get(self, name: str) -> str | None:
        """First value of `name` as received, or None."""
        canon = _EXACT.get(name) or canonical_name(name)
        if canon == "Content-Length":
            return str(len(self.body))
        return self.first_values().get(canon)

    def get_all(self, name: str) -> list[str]:
        """Every value of `name` in order, list headers split at their commas."""
        canon = canonical_name(name)
        if canon == "Content-Length":
            return [str(len(self.body))]
        if canon in LIST_HEADERS:
            out: list[str] = []
            for n, v in self.headers:
                if n == canon:
                    out.extend(split_list(v))
            return out
        return [v for n, v in self.headers if n == canon]

    def add(self, name: str, value: str) -> None:
        """Append a header line; Content-Length is ignored (derived from the body)."""
        canon = canonical_name(name)
        if canon == "Content-Length":
            return
        self.headers.append((canon, _check_value(value)))
        self._first = None

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header by one with `value`, at the first one's place."""
        canon = canonical_name(name)
        if canon == "Content-Length":
            return
        _check_value(value)
        self._first = None
        for i, (n, _) in enumerate(self.headers):
            if n == canon:
                self.headers[i] = (canon, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != canon]
                return
        self.headers.append((canon, value))

    def remove(self, name: str) -> None:
        """Drop every `name` header."""
        canon = canonical_name(name)
        self.headers = [h for h in self.headers if h[0] != canon]
        self._first = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        canon = canonical_name(name)
        return canon == "Content-Length" or canon in self.first_values()

    def start_line(self) -> str:
        """Request and Response each define their start line; a bare Message (a header
        block, as the engine uses to check headers once) has none to serialise."""
        raise NotImplementedError("a bare header block has no start line")

    def to_bytes(self) -> bytes:
        """Wire form: CRLF line ends, exactly one Content-Length, then the body."""
        lines = [self.start_line()]
        lines.extend(f"{n}: {v}" for n, v in self.headers)
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def _same_content(self, other: Message) -> bool:
        return self.headers == other.headers and self.body == other.body


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self.method == other.method and self.uri == other.uri and self._same_content(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} headers={len(self.headers)}>"


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self._same_content(other)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} headers={len(self.headers)}>"


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        version, _, rest = line.partition(" ")
        if version != "SIP/2.0":
            raise SipParseError("start-line", f"unsupported version {version[:20]!r}")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise SipParseError("start-line", f"bad status code {code[:20]!r}")
        status = int(code)
        if not 100 <= status <= 699:
            raise SipParseError("start-line", f"status code {status} out of range")
        return Response(status, reason.strip(" \t"))
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("start-line", f"malformed request line {line[:60]!r}")
    method, uri, version = parts
    if version != "SIP/2.0":
        raise SipParseError("start-line", f"unsupported version {version[:20]!r}")
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise SipParseError("start-line", f"bad method {method[:20]!r}")
    if not uri:
        raise SipParseError("start-line", "empty Request-URI")
    return Request(method, uri)


def _content_length(value: str) -> int:
    v = value.strip()
    if not v or not (v.isascii() and v.isdigit()):
        raise SipParseError("content-length", f"bad Content-Length {value[:20]!r}")
    if len(v) > 10:
        raise SipParseError("too-large", "Content-Length too large")
    return int(v)


def parse_message(data: bytes, *, max_size: int = 65535) -> Request | Response:
    """Parse one datagram into a Request or Response.

    Tolerant where real peers differ (LF-only line ends, folded headers, padded
    Content-Length, missing Content-Length = rest of datagram, leading CRLF
    keep-alives) and strict elsewhere. Raises only SipParseError.
    """
    if len(data) > max_size:
        raise SipParseError("too-large", f"{len(data)} bytes > {max_size}")
    start = 0
    n = len(data)
    while start < n and data[start] in b"\r\n":
        start += 1
    if start == n:
        raise SipParseError("empty", "no message (keep-alive?)")
    # The head ends at the first empty line, whatever mix of CRLF and LF was used.
    a = data.find(b"\n\r\n", start)
    # Only an LF LF before that one matters: without a bound the search would
    # run through the whole body of every CRLF message. (One starting at a - 1
    # ends at a + 1; none can start at a, which is followed by CR.)
    b = data.find(b"\n\n", start, a + 1) if a >= 0 else data.find(b"\n\n", start)
    if a < 0 and b < 0:
        raise SipParseError("truncated", "no empty line after the headers")
    if b < 0 or 0 <= a < b:
        head_end, body_start = a, a + 3
    else:
        head_end, body_start = b, b + 2
    if data[head_end - 1] == 13:  # the CR of the last header line's CRLF
        head_end -= 1
    head = data[start:head_end].decode("utf-8", "surrogateescape")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
        if "\r" in head:
            raise SipParseError("header", "bare CR in header section")
    lines = head.split("\n")
    msg = _parse_start_line(lines[0])
    if len(lines) > _MAX_HEADERS + 1:
        raise SipParseError("too-large", f"more than {_MAX_HEADERS} header lines")

    headers = msg.headers
    canon_map = _CANON
    exact = _EXACT
    length: int | None = None
    last_was_length = False
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if last_was_length:
                raise SipParseError("content-length", "folded Content-Length")
            if not headers:
                raise SipParseError("header", "continuation line before any header")
            cont = line.strip(" \t")
            if cont:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {cont}" if value else cont)
            continue
        name, sep, value = line.partition(":")
        canon = exact.get(name) or canon_map.get(name.lower())
        if canon is None or not sep:
            canon, value = parse_header_line(line)
        value = value.strip(" \t")
        if canon == "Content-Length":
            cl = _content_length(value)
            if length is not None and cl != length:
                raise SipParseError("content-length", "conflicting Content-Length headers")
            length = cl
            last_was_length = True
            continue
        last_was_length = False
        headers.append((canon, value))

    if length is None:
        msg.body = data[body_start:]
    else:
        end = body_start + length
        if end > n:
            exc = SipParseError("truncated", f"body shorter than Content-Length {length}")
            exc.partial = msg
            raise exc
        msg.body = data[body_start:end]
    return msg


def parse_header_line(line: str) -> tuple[str, str]:
    """One ``Name: value`` line as the parser reads it: (canonical name, value). The
    name must be a token; a continuation line, CR or LF is refused."""
    if "\r" in line or "\n" in line:
        raise SipParseError("header", f"CR or LF inside a header line {line[:40]!r}")
    if line[:1] in (" ", "\t"):
        raise SipParseError("header", f"continuation line without a header {line[:40]!r}")
    name, sep, value = line.partition(":")
    if not sep:
        raise SipParseError("header", f"no colon in header line {line[:40]!r}")
    name = name.rstrip(" \t")
    if not name or not _TOKEN_CHARS.issuperset(name):
        raise SipParseError("header", f"bad header name {name[:40]!r}")
    return canonical_name(name), value.strip(" \t")


def require(msg: Message, *names: str) -> None:
    """Raise SipParseError("missing-header") unless every header in `names` is present."""
    first = msg.first_values()
    for name in names:
        canon = canonical_name(name)
        if canon not in first:
            raise SipParseError("missing-header", f"no {canon} header")
