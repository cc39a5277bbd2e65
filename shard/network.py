"""Where the engine's datagrams go on the wire: UDP, TCP or TLS, names located first.

The engine names a :data:`Hop` for each datagram: a concrete
:class:`Destination`, or a :class:`SipTarget` whose name the resolver locates
(RFC 3263: NAPTR, SRV, AAAA/A, cached). :class:`Network` carries each one out:

* UDP goes out on the shard's socket at once, but a request over 1 300 bytes
  goes over TCP to the same address and port (RFC 3261 §18.1.1);
* TCP and TLS go through the shard's :class:`ConnectionPool` (one pooled
  connection per target, opened on first use, re-opened after the server closed
  it); an answer to a request that came in on a connection goes back on it;
* a name's datagrams wait for its resolution; the first target that is not held
  back after a failure gets them (RFC 3263 §4.3). A connection that cannot be
  opened marks its target failed and the datagram goes to the next target at
  once; a UDP target that has not answered within ``target_budget`` (8 T1) is
  marked failed and the request's next retransmission (same branch: one
  transaction, one Timer F) goes to the next target; with none left, the
  request fails with the cause's kind: ``dns`` for a name that did not resolve,
  ``tls`` for a handshake or certificate, else ``transport``.

Requests are built for UDP; one sent over TCP or TLS has its Via transport (and
for TLS its sent-by port) rewritten here, the one place that knows where it went.
The engine hears of failures through ``on_failed`` and is flushed by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ..presence.status import FailureKind
from ..sip.transaction import ClientTransaction
from .connections import Connection, ConnectionPool, Received, SendFailure
from .destination import Destination, Transport, address_family
from .dns import ResolverDriver
from .resolver import DnsFailure, Resolution, SipTarget
from .routing import Hop

__all__ = ["Network", "SendFailed", "via_for"]

log = logging.getLogger(__name__)

#: Called with (the transaction, why, the failure's kind) when a request could
#: not be sent at all; None for a response (the peer retransmits its request).
SendFailed = Callable[[ClientTransaction | None, str, FailureKind], None]
#: Called with each message that came in on a stream: (bytes, source, transport).
StreamMessage = Callable[[bytes, tuple[str, int], Transport], None]

_UDP_VIA = b"SIP/2.0/UDP "
#: RFC 3261 §18.1.1: a request larger than this goes over a congestion-controlled
#: transport (TCP) when the path MTU is unknown, unless the URI asked for UDP.
MAX_UDP_REQUEST = 1300


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A datagram for a name being located."""

    data: bytes
    ref: ClientTransaction | None


@dataclass(slots=True)
class _Walk:
    """Where a request was last sent, and since when (for a name's targets)."""

    target: SipTarget | None
    dest: Destination
    since: float


def _walk_of(ref: ClientTransaction | None) -> _Walk | None:
    """The walk a request is on, kept on its transaction (gone with it)."""
    walk = None if ref is None else ref.delivery
    return walk if isinstance(walk, _Walk) else None


@dataclass(frozen=True, slots=True)
class _Tag:
    """What a stream send carries, so its failure can go to the next target."""

    data: bytes
    ref: ClientTransaction | None
    target: SipTarget | None


def via_for(
    data: bytes,
    transport: Transport,
    hostport: str,
    tls_hostport: str,
    *,
    listening: frozenset[Transport] = frozenset(),
) -> bytes:
    """A request built for UDP, as sent over ``transport``: its own (first) Via
    names the transport, and for TLS the TLS listener's port. When the shard
    listens on that transport, the Contact says so too (``;transport=tcp``, or
    ``sips:`` at the TLS port), so the notifier keeps to the stream for its
    NOTIFYs; otherwise they come over UDP."""
    if transport is Transport.UDP or not data.startswith((b"SUBSCRIBE ", b"OPTIONS ")):
        return data
    tls = transport is Transport.TLS
    ours = (tls_hostport if tls else hostport).encode()
    new = f"SIP/2.0/{transport.value.upper()} ".encode() + ours
    data = data.replace(_UDP_VIA + hostport.encode(), new, 1)
    if transport in listening:
        contact = b"<sips:" + ours + b">" if tls else b"<sip:" + ours + b";transport=tcp>"
        old = b"\r\nContact: <sip:" + hostport.encode() + b">"
        data = data.replace(old, b"\r\nContact: " + contact, 1)
    return data


class Network:
    """A shard's ways out: its UDP socket, its connection pool, its resolver."""

    def __init__(
        self,
        *,
        on_failed: SendFailed,
        on_message: StreamMessage,
        hostport: str,
        tls_hostport: str = "",
    ) -> None:
        self.on_failed = on_failed
        self.on_message = on_message
        self.hostport = hostport
        self.tls_hostport = tls_hostport or hostport
        self.udp: asyncio.DatagramTransport | None = None
        self.family: int = socket.AF_INET
        #: Stream transports the shard accepts connections on.
        self.listening: frozenset[Transport] = frozenset()
        #: The shard's other UDP sockets, by address family (``[sip] listen``).
        self._more_udp: dict[int, asyncio.DatagramTransport] = {}
        self.pool: ConnectionPool | None = None
        self.resolver: ResolverDriver | None = None
        #: Seconds a UDP target has to answer a request before its retransmissions
        #: go to the next target (RFC 3263 §4.3); 0: never (Timer F decides).
        self.target_budget = 0.0
        self._inbound: dict[tuple[Transport, tuple[str, int]], Connection] = {}

    # -------------------------------------------------------------- sending

    def send(self, data: bytes, hop: Hop, ref: ClientTransaction | None) -> str:
        """Send at once, start locating a name, or say why it cannot be sent ("")."""
        walk = _walk_of(ref)
        if walk is not None and walk.dest.transport is not Transport.UDP:
            # A retransmission (timer E) of a request that went over a stream: a
            # reliable transport retransmits nothing (RFC 3261 §17.1.2.2); Timer F
            # still bounds the transaction.
            return ""
        if isinstance(hop, Destination):
            problem = self._send_to(data, hop, ref, None)
            if not problem and ref is not None and hop.transport is not Transport.UDP:
                ref.delivery = _Walk(None, hop, 0.0)
            return problem
        resolver = self.resolver
        if resolver is None:
            return f"{hop.host!r} is a name and this shard has no resolver"
        if walk is not None:  # a retransmission over UDP: same target, unless its time is up
            now = resolver.clock()
            if not self.target_budget or now - walk.since < self.target_budget:
                return self._send_to(data, walk.dest, ref, walk.target)
            resolver.resolver.failed.mark(walk.dest, now)
            log.info("target %s:%s of %s did not answer", walk.dest.host, walk.dest.port, hop.host)
            assert ref is not None
            ref.delivery = None
        # Sent by resolved(): now for a literal or a cached name, else once the
        # look-ups answer (the resolver keeps the resolution until then).
        resolver.resolve(hop, _Waiting(data, ref))
        return ""

    def resolved(self, resolution: Resolution) -> None:
        """A name was located (the resolver driver's ``on_done``)."""
        waiting = resolution.context
        if isinstance(waiting, _Waiting):
            self._send_located(waiting.data, resolution, waiting.ref)

    def _send_located(
        self, data: bytes, resolution: Resolution, ref: ClientTransaction | None
    ) -> None:
        result = resolution.result
        if isinstance(result, DnsFailure):
            self.on_failed(ref, result.detail, FailureKind.DNS)
            return
        assert result is not None and self.resolver is not None
        target = resolution.target
        now = self.resolver.clock()
        failed = self.resolver.resolver.failed
        for dest in result.targets:
            if failed.held_until(dest, now) is not None:
                continue
            problem = self._send_to(data, dest, ref, target)
            if not problem:
                if ref is not None:
                    ref.delivery = _Walk(target, dest, now)
                return
            failed.mark(dest, now)
            log.info("target %s:%s of %s failed: %s", dest.host, dest.port, target.host, problem)
        self.on_failed(ref, f"no usable target for {target.host}", FailureKind.TRANSPORT)

    def _send_to(
        self,
        data: bytes,
        dest: Destination,
        ref: ClientTransaction | None,
        target: SipTarget | None,
    ) -> str:
        """Send to one concrete destination; why not ("" when sent or queued)."""
        if dest.transport is Transport.UDP:
            if ref is None or len(data) <= MAX_UDP_REQUEST or self.pool is None:
                return self._sendto(data, dest)
            dest = Destination(Transport.TCP, dest.host, dest.port)  # RFC 3261 §18.1.1
        data = via_for(
            data, dest.transport, self.hostport, self.tls_hostport, listening=self.listening
        )
        if ref is None:
            conn = self._inbound.get((dest.transport, (dest.host, dest.port or 0)))
            if conn is not None and conn.write(data):
                return ""
        pool = self.pool
        if pool is None:
            return f"no {dest.transport.value.upper()} transport in this shard"
        name = target.host if target is not None else ""
        try:
            pool.send(data, dest, server_name=name, tag=_Tag(data, ref, target))
        except (ValueError, OSError) as exc:
            return str(exc)
        return ""

    def add_udp(self, transport: asyncio.DatagramTransport, family: int) -> None:
        """Another UDP socket of the shard, used for destinations of its family."""
        self._more_udp[family] = transport

    @property
    def families(self) -> frozenset[int]:
        """Address families the shard has a UDP socket for."""
        return frozenset({self.family, *self._more_udp})

    def _sendto(self, data: bytes, dest: Destination) -> str:
        family = address_family(dest.host)
        if not family:
            return f"{dest.host!r} is not an address"
        transport = self.udp if family == self.family else self._more_udp.get(family)
        if transport is None:
            if family not in self.families:
                ours = 6 if self.family == socket.AF_INET6 else 4
                return f"{dest.host} is not reachable from an IPv{ours} socket"
            return "SIP socket is closed"
        try:
            transport.sendto(data, (dest.host.strip("[]"), dest.port))
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return ""

    def target_refused(self, ref: ClientTransaction, retry_after: float | None) -> None:
        """The target ``ref`` went to answered 503: hold it back for ``retry_after``
        (else the resolver's hold), so the request's next attempt goes elsewhere."""
        walk, ref.delivery = _walk_of(ref), None
        if walk is not None and self.resolver is not None:
            self.resolver.resolver.failed.mark(walk.dest, self.resolver.clock(), retry_after)

    # -------------------------------------------------------------- streams

    def stream_failed(self, failure: SendFailure) -> None:
        """A stream send failed (the pool's ``on_failure``): next target, or fail."""
        tag = failure.tag
        if not isinstance(tag, _Tag):
            return
        if tag.target is not None and self.resolver is not None and failure.kind is not (
            FailureKind.TLS
        ):
            self.resolver.resolver.failed.mark(failure.destination, self.resolver.clock())
            self.resolver.resolve(tag.target, _Waiting(tag.data, tag.ref))
            return
        dest = failure.destination
        self.on_failed(
            tag.ref, f"{dest.transport.value} {dest.host}:{dest.port}: {failure.reason}",
            failure.kind,
        )

    def stream_message(self, received: Received) -> None:
        """A message came in on a connection (the pool's ``on_message``)."""
        key = (received.transport, received.source)
        if key not in self._inbound and len(self._inbound) >= 4096:
            self._inbound.clear()  # a bound: stale entries are only a lost shortcut
        self._inbound[key] = received.connection
        self.on_message(received.data, received.source, received.transport)

    def connections(self) -> int:
        """Streams open now, ours and the peers'."""
        pool = self.pool
        return 0 if pool is None else pool.open_count()
