"""Stream framing for SIP over TCP and TLS (RFC 3261 §18.3, RFC 5626 §4.4.1).

A datagram is one message; a stream is a run of bytes that must be cut into
messages by their Content-Length, with CRLF keep-alives between them. This
object does only that cutting: bytes in, events out, the time passed in. It
never parses a message beyond what framing needs, so the bytes of a `Frame`
go to :func:`parse_message` exactly as a datagram's would.

Keep-alives: a double CRLF between messages is a ping (answer it with `PONG`),
a single CRLF a pong. A single CRLF at the end of what has arrived is
ambiguous: the first half of a ping, or a pong. Whoever sends the pings on the
connection (the side that opened it, RFC 5626 §4.4.1) takes it for a pong at
once; the other side waits for the next byte, so that a ping split between two
reads is still one ping.

Anything that cannot be framed (no or bad Content-Length, an oversize header or
message, a start line that is not SIP, a partial message older than the read
timeout) ends the stream with one `StreamError`: a stream has no boundary to
resynchronise on, so the connection must be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "PING",
    "PONG",
    "Frame",
    "FramingLimits",
    "Ping",
    "Pong",
    "StreamError",
    "StreamEvent",
    "StreamFramer",
]

#: What a keep-alive ping is on the wire, and what answers it.
PING = b"\r\n\r\n"
PONG = b"\r\n"

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*$", re.I | re.M)
_STATUS_LINE = re.compile(rb"^SIP/2\.0 [1-6][0-9][0-9](?: |$)")
_REQUEST_LINE = re.compile(rb"^[A-Za-z0-9.!%*_+`'~-]+ [^ ]+ SIP/2\.0$")


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole message's bytes, Content-Length body included."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a CRLFCRLF keep-alive: write `PONG` back."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer answered a keep-alive (or sent a stray CRLF): it is alive."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """The stream cannot be framed any further: close the connection.

    `kind` is short and stable for counting: "too-large", "content-length",
    "start-line", "keep-alive" or "timeout".
    """

    kind: str
    detail: str


StreamEvent = Frame | Ping | Pong | StreamError


@dataclass(frozen=True, slots=True)
class FramingLimits:
    """Bounds that keep one peer from holding a shard's memory or a connection."""

    max_message_size: int = 65535
    max_header_bytes: int = 16384
    max_headers: int = 256
    #: Seconds a message may take from its first byte to its last.
    read_timeout: float = 32.0


class StreamFramer:
    """Cuts one connection's byte stream into SIP messages and keep-alives.

    `pinger` is True on a connection this side opened (it sends the pings, so a
    lone CRLF is a pong at once). Call `feed` with each read, `on_timer` at
    `next_deadline()`. After a `StreamError` the framer is finished and ignores
    further input.
    """

    __slots__ = ("_buf", "_failed", "_limits", "_pinger", "_scan", "_started", "_total")

    def __init__(self, limits: FramingLimits | None = None, *, pinger: bool = False) -> None:
        self._limits = limits or FramingLimits()
        self._pinger = pinger
        self._buf = bytearray()
        self._failed = False
        self._started: float | None = None  # when the message under way began
        self._scan = 0  # where the search for the end of the head resumes
        self._total = -1  # length of the message once its head is complete

    @property
    def finished(self) -> bool:
        """True once a StreamError was given: the connection must be closed."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet a whole message."""
        return len(self._buf)

    def next_deadline(self) -> float | None:
        """When the message under way times out; None when between messages."""
        if self._started is None or self._failed:
            return None
        return self._started + self._limits.read_timeout

    def on_timer(self, now: float) -> list[StreamEvent]:
        """A StreamError("timeout") if a partial message is older than the read timeout."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return [self._fail("timeout", f"message incomplete after {self._limits.read_timeout:g} s")]

    def feed(self, data: bytes, now: float) -> list[StreamEvent]:
        """Take bytes read from the stream; return what they completed, in order."""
        if self._failed:
            return []
        self._buf += data
        events: list[StreamEvent] = []
        while self._buf and not self._failed:
            if self._started is None:
                if not self._keepalive(events):
                    break
                if not self._buf:
                    break
                self._started = now
            frame = self._message()
            if frame is None:
                break
            if isinstance(frame, StreamError):
                events.append(frame)
                break
            events.append(frame)
        return events

    # -- between messages: keep-alives ---------------------------------------

    def _keepalive(self, events: list[StreamEvent]) -> bool:
        """Consume CRLFs before a message; False when more bytes are needed first."""
        buf = self._buf
        while buf:
            first = buf[0]
            if first == 0x0A:  # a bare LF between messages: tolerated and dropped
                del buf[0]
                continue
            if first != 0x0D:
                return True
            if len(buf) < 2:
                return False
            if buf[1] != 0x0A:
                events.append(self._fail("keep-alive", "CR not followed by LF between messages"))
                return False
            if buf[:4] == PING:
                del buf[:4]
                events.append(Ping())
                continue
            if len(buf) == 2 and not self._pinger:
                return False  # perhaps the first half of a ping
            if len(buf) == 3 and buf[2] == 0x0D:
                if self._pinger:
                    del buf[:2]
                    events.append(Pong())
                    continue
                return False
            del buf[:2]
            events.append(Pong())
        return True

    # -- a message -------------------------------------------------------------

    def _message(self) -> Frame | StreamError | None:
        limits = self._limits
        buf = self._buf
        if self._total < 0:
            line_end = buf.find(b"\n")
            if line_end < 0:
                if len(buf) > limits.max_header_bytes:
                    return self._fail("too-large", "start line longer than the header limit")
                return None
            if self._scan == 0:
                line = bytes(buf[:line_end]).rstrip(b"\r")
                if not (_STATUS_LINE.match(line) or _REQUEST_LINE.match(line)):
                    return self._fail("start-line", f"not a SIP start line: {line[:60]!r}")
            end, body = _head_end(buf, max(self._scan, line_end))
            if end < 0:
                if len(buf) > limits.max_header_bytes:
                    return self._fail("too-large", f"header over {limits.max_header_bytes} bytes")
                self._scan = max(len(buf) - 3, line_end)
                return None
            if body > limits.max_header_bytes:
                return self._fail("too-large", f"header over {limits.max_header_bytes} bytes")
            head = bytes(buf[:end]).rstrip(b"\r")
            if head.count(b"\n") > limits.max_headers:
                return self._fail("too-large", f"more than {limits.max_headers} header lines")
            length = _content_length(head)
            if isinstance(length, StreamError):
                return self._error(length)
            if body + length > limits.max_message_size:
                return self._fail(
                    "too-large", f"message of {body + length} bytes > {limits.max_message_size}"
                )
            self._total = body + length
        if len(buf) < self._total:
            return None
        frame = Frame(bytes(buf[: self._total]))
        del buf[: self._total]
        self._started = None
        self._scan = 0
        self._total = -1
        return frame

    def _fail(self, kind: str, detail: str) -> StreamError:
        return self._error(StreamError(kind, detail))

    def _error(self, error: StreamError) -> StreamError:
        self._failed = True
        self._buf.clear()
        return error


def _head_end(buf: bytearray, start: int) -> tuple[int, int]:
    """(end of the head, start of the body) at the first empty line, or (-1, -1).

    The empty line may end in CRLF or a bare LF, as parse_message accepts."""
    crlf = buf.find(b"\n\r\n", start)
    lf = buf.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return -1, -1
    if lf < 0 or 0 <= crlf < lf:
        return crlf, crlf + 3
    return lf, lf + 2


def _content_length(head: bytes) -> int | StreamError:
    """The one Content-Length of a head (RFC 3261 §18.3: mandatory on streams)."""
    lengths: set[int] = set()
    for value in _CONTENT_LENGTH.findall(head.replace(b"\r\n", b"\n")):
        if not value.isdigit() or len(value) > 10:
            return StreamError("content-length", f"bad Content-Length {value[:20]!r}")
        lengths.add(int(value))
    if not lengths:
        return StreamError("content-length", "no Content-Length on a stream")
    if len(lengths) > 1:
        return StreamError("content-length", "conflicting Content-Length headers")
    return lengths.pop()
