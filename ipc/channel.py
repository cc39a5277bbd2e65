"""The supervisor ⇄ shard channel: a SEQPACKET socket pair carrying typed packets.

Clients reach the service through rings; inside the service, the supervisor
and each shard talk over one ``socketpair(AF_UNIX, SOCK_SEQPACKET)``. It has
to be a socket, because a client's status ring reaches the shard as fds
(SCM_RIGHTS), and the traffic on it is rare (subscribe, unsubscribe, admin,
pings) except for a replay after a shard restart, which travels in batches of
many commands per packet. EOF on it is also how each side learns the other
died, with no polling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from .fdpass import FdPassError, close_fds, recv_fds, send_fds

log = logging.getLogger(__name__)

MAX_PACKET: Final = 64 * 1024
MAX_FDS: Final = 8
BATCH_BYTES: Final = 48 * 1024
"""A replay batch is cut when its encoded commands pass this many bytes."""


class Configure(msgspec.Struct, tag="configure", frozen=True, gc=False):
    """The first packet to a new shard: the whole validated configuration as tables."""

    config: dict[str, Any]


class Attach(msgspec.Struct, tag="attach", frozen=True, gc=False):
    """A client connected: its status ring for this shard comes as 3 fds."""

    client: int
    name: str = ""


class Detach(msgspec.Struct, tag="detach", frozen=True, gc=False):
    """A client is gone: drop its ring and its interest in every dialog."""

    client: int


class Sub(msgspec.Struct, tag="sub", frozen=True, gc=False):
    """Client ``client`` asks for (package, record, subscriber) under its ``id``.

    ``replay`` marks a subscription re-sent to a restarted shard: the client first
    gets a pending status with reason ``reestablishing``. ``seq`` is the
    supervisor's number for this registry entry, echoed in :class:`Ended`, so a
    late Ended cannot remove a newer subscription that reuses the id. A non-empty
    ``refuse`` asks the shard only to tell the client why it is refused (the
    supervisor cannot write to status rings itself).
    """

    client: int
    id: int
    package: str
    record: str
    subscriber: str
    replay: bool = False
    seq: int = 0
    refuse: str = ""


class Unsub(msgspec.Struct, tag="unsub", frozen=True, gc=False):
    """Client ``client`` ends its subscription ``id``.

    ``missed`` marks an unsubscribe the shard never got the subscription for (it
    was down meanwhile): the client still waits for its final status, and only
    the shard can write it. ``key`` (package, record, subscriber) comes with a
    missed one: the restarted shard may have taken that dialog back from its
    store, and nobody wants it any more.
    """

    client: int
    id: int
    missed: bool = False
    key: tuple[str, str, str] | None = None


class Ended(msgspec.Struct, tag="ended", frozen=True, gc=False):
    """Shard → supervisor: these client subscriptions are over without an Unsub.

    The notifier ended them for good, the engine refused them, or an operator
    killed them; each item is (client, id, seq of the Sub). The supervisor drops
    them from its registry so that a restarted shard does not get them back.
    """

    items: list[tuple[int, int, int]]


class Batch(msgspec.Struct, tag="batch", frozen=True, gc=False):
    """Several Sub/Unsub in one packet (replays after a restart)."""

    items: list[Sub | Unsub]


class Query(msgspec.Struct, tag="query", frozen=True, gc=False):
    """An admin command for the shard; answered by an Answer with the same ``qid``."""

    qid: int
    command: str
    args: dict[str, str] = msgspec.field(default_factory=dict)


class Answer(msgspec.Struct, tag="answer", frozen=True, gc=False):
    qid: int
    ok: bool
    data: Any = None
    error: str = ""


class Ping(msgspec.Struct, tag="ping", frozen=True, gc=False):
    """Liveness probe: a shard whose loop is stuck cannot answer it."""

    seq: int


class Pong(msgspec.Struct, tag="pong", frozen=True, gc=False):
    seq: int
    subscriptions: int = 0
    dialogs: int = 0


class Reload(msgspec.Struct, tag="reload", frozen=True, gc=False):
    """New [presence_b2b] parameters (as a table) and log level after SIGHUP;
    ``credentials``: the supervisor checked the credentials file, read it again."""

    params: dict[str, Any]
    log_level: str = "info"
    credentials: bool = False


class Shutdown(msgspec.Struct, tag="shutdown", frozen=True, gc=False):
    """Unsubscribe everything, wait at most ``grace`` seconds, then exit 0."""

    grace: float


class Ready(msgspec.Struct, tag="ready", frozen=True, gc=False):
    """The shard is up: its SIP socket is bound and it takes commands."""

    shard: int
    pid: int
    port: int


ChannelMessage = (
    Configure | Attach | Detach | Sub | Unsub | Ended | Batch | Query | Answer | Ping | Pong
    | Reload | Shutdown | Ready
)

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final[msgspec.msgpack.Decoder[ChannelMessage]] = msgspec.msgpack.Decoder(
    ChannelMessage
)


def encode(message: ChannelMessage) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> ChannelMessage:
    return _decoder.decode(data)


def batches(items: Sequence[Sub | Unsub]) -> list[Batch]:
    """Cut ``items`` into batches that each fit comfortably in one packet."""
    out: list[Batch] = []
    current: list[Sub | Unsub] = []
    size = 0
    for item in items:
        n = len(_encoder.encode(item))
        if current and size + n > BATCH_BYTES:
            out.append(Batch(current))
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        out.append(Batch(current))
    return out


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """The two ends, close-on-exec; the supervisor keeps [0], the shard gets [1]."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return a, b


Handler = Callable[[ChannelMessage, list[int]], None]


class Channel:
    """One end of the pair, on an event loop: non-blocking sends with a queue.

    ``on_message`` gets each decoded packet and the fds that came with it (the
    handler owns them). ``on_closed`` runs once, on EOF or a broken socket.
    Undecodable packets are logged, counted and dropped: a peer's bug must not
    take the channel down.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Handler,
        on_closed: Callable[[], None],
        *,
        name: str = "channel",
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.name = name
        self._on_message = on_message
        self._on_closed = on_closed
        self._queue: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self.closed = False
        self.bad_packets = 0
        #: Bytes queued here because the socket buffer was full. The queue itself
        #: is not bounded: a sender that can wait reads this and stops feeding it.
        self.backlog_bytes = 0
        #: Called (on the next loop turn) once the queue has emptied after the socket
        #: buffer was full.
        self.on_drained: Callable[[], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, message: ChannelMessage, fds: Sequence[int] = ()) -> bool:
        """Queue ``message`` (with copies of ``fds``); False if the channel is closed.

        Also False when this very send found the peer gone: the caller may have
        to keep the message for the peer's successor.
        """
        if self.closed:
            return False
        data = _encoder.encode(message)
        owned = [os.dup(fd) for fd in fds]
        self._queue.append((data, owned))
        self.backlog_bytes += len(data)
        self._flush()
        return not self.closed

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def _flush(self) -> None:
        while self._queue and not self.closed:
            data, fds = self._queue[0]
            try:
                if fds:
                    send_fds(self.sock, data, fds)
                else:
                    self.sock.send(data)
            except BlockingIOError:
                self._want_write()
                return
            except OSError as exc:
                log.debug("%s: send failed: %s", self.name, exc)
                self._close()
                return
            self._queue.popleft()
            self.backlog_bytes -= len(data)
            close_fds(fds)
        if self._writing and self._loop is not None:
            self._loop.remove_writer(self.sock.fileno())
            self._writing = False
            if self.on_drained is not None and not self.closed:
                # Not from inside send(): the callback usually sends again.
                self._loop.call_soon(self._drained)

    def _drained(self) -> None:
        if self.on_drained is not None and not self.closed and not self._queue:
            self.on_drained()

    def _want_write(self) -> None:
        if not self._writing and self._loop is not None:
            self._loop.add_writer(self.sock.fileno(), self._flush)
            self._writing = True

    def _readable(self) -> None:
        for _ in range(64):  # bounded work per loop turn
            try:
                data, fds = recv_fds(self.sock, MAX_PACKET, MAX_FDS)
            except BlockingIOError:
                return
            except (FdPassError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
                    return
                log.warning("%s: receive failed: %s", self.name, exc)
                self._close()
                return
            if not data and not fds:
                self._close()
                return
            try:
                message = _decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.bad_packets += 1
                close_fds(fds)
                log.error("%s: dropped an undecodable packet: %s", self.name, exc)
                continue
            try:
                self._on_message(message, fds)
            except Exception:
                log.exception("%s: handler failed on %s", self.name, type(message).__name__)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
            if self._writing:
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(self.sock.fileno())
        for _, fds in self._queue:
            close_fds(fds)
        self._queue.clear()
        self.backlog_bytes = 0
        self.sock.close()
        self._on_closed()

    def close(self) -> None:
        """Close from this side; ``on_closed`` still runs once."""
        self._close()
