"""SIP over TCP and TLS: the shard's outgoing connection pool and its listeners.

The thin asyncio layer for streams, as ``transport.py`` is for UDP. The engine
names a `Destination`; the driver gives this pool the bytes and the resolved
destination and gets back, through two callbacks, every message received (with
a way to answer on its connection) and every request that could not be sent.
All cutting of the stream into messages is the sans-I/O `StreamFramer`'s.

* One connection per (transport, address, port, TLS server name), shared by
  every dialog towards that target; opened on the first send, with a connect
  timeout; bytes sent while it connects wait for it.
* A connection the peer closed leaves the pool at once: the next send opens a
  new one (RFC 3261 §18.1.1 lets either side close an idle connection).
* Connections we open send a CRLFCRLF ping every `keepalive_interval` and are
  closed when no pong comes within `keepalive_timeout` (RFC 5626 §4.4.1).
* Listeners accept the peers' connections (a notifier may open its own to send
  NOTIFYs); a request that arrives on any connection is answered on that same
  connection (RFC 3261 §18.2.2) through `Received.reply`.
* Failures never escape as exceptions: each send that could not go out is
  reported to `on_failure` with its tag, as `FailureKind.TLS` (with the TLS
  library's reason) or `FailureKind.TRANSPORT`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..metrics.shard import ShardMetrics
from ..presence.status import FailureKind
from ..sip.framing import PING, PONG, Frame, FramingLimits, Ping, Pong, StreamError, StreamFramer
from .destination import Destination, Transport
from .tls import classify_tls_error

__all__ = ["Connection", "ConnectionPool", "Received", "SendFailure", "StreamSettings"]

log = logging.getLogger(__name__)

#: RFC 3261 §19.1.2: the port of a URI without one.
DEFAULT_PORTS = {Transport.TCP: 5060, Transport.TLS: 5061}


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Timing and limits of every stream connection of one shard."""

    connect_timeout: float = 10.0
    #: Seconds between CRLFCRLF pings on connections we opened; 0 sends none.
    keepalive_interval: float = 30.0
    #: Seconds to wait for the pong before the connection is taken for dead.
    keepalive_timeout: float = 10.0
    limits: FramingLimits = field(default_factory=FramingLimits)


@dataclass(frozen=True, slots=True)
class SendFailure:
    """Bytes given to `ConnectionPool.send` that could not be sent.

    `tag` is the caller's, as given to `send` (e.g. the transaction's branch);
    `kind` is TLS for a failed handshake or refused certificate, else TRANSPORT;
    `reason` is worth showing to an operator as it is."""

    tag: object
    destination: Destination
    kind: FailureKind
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class Received:
    """One message that arrived on a stream, and the way back to its sender."""

    data: bytes
    transport: Transport
    #: The peer's (address, port): for an inbound connection an ephemeral port,
    #: not where the peer listens (that is its Via sent-by).
    source: tuple[str, int]
    connection: Connection

    def reply(self, data: bytes) -> bool:
        """Send on the connection the message came in on (RFC 3261 §18.2.2).

        False when that connection is gone: the response must then go to the
        Via's sent-by (received/rport) on a new connection, through `send`."""
        return self.connection.write(data)


class Connection(asyncio.Protocol):
    """One TCP or TLS connection: frames what it reads, keeps itself alive."""

    def __init__(
        self,
        pool: ConnectionPool,
        transport: Transport,
        *,
        destination: Destination | None = None,
        server_name: str = "",
    ) -> None:
        self.pool = pool
        self.transport = transport
        #: Set for the connections we open; None for a peer's.
        self.destination = destination
        self.server_name = server_name
        #: The pool's key while this connection is pooled (connections we open).
        self.key: tuple[Transport, str, int, str] | None = None
        self.outbound = destination is not None
        self.peer: tuple[str, int] = (
            (destination.host, destination.port or 0) if destination else ("", 0)
        )
        self.framer = StreamFramer(pool.settings.limits, pinger=self.outbound)
        self.closed = False
        self._stream: asyncio.Transport | None = None
        self._waiting: list[tuple[bytes, object]] = []  # sent while connecting
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_deadline: float | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        """Up and writable: not connecting, not closing, not closed."""
        stream = self._stream
        return stream is not None and not self.closed and not stream.is_closing()

    def write(self, data: bytes) -> bool:
        """Write now; False when the connection is not up (nothing is queued)."""
        stream = self._stream
        if stream is None or self.closed or stream.is_closing():
            return False
        stream.write(data)
        return True

    def close(self) -> None:
        """Close at once; bytes still waiting to connect are reported as failed."""
        if self._stream is not None:
            self._stream.abort()
        else:
            self._failed(FailureKind.TRANSPORT, "connection closed before it was up")

    # -- while connecting ---------------------------------------------------------

    def _queue(self, data: bytes, tag: object) -> None:
        self._waiting.append((data, tag))

    def _failed(self, kind: FailureKind, reason: str) -> None:
        """The connection never came up: report every send that waited for it."""
        if self.closed:
            return
        self.closed = True
        self.pool._forget(self)
        waiting, self._waiting = self._waiting, []
        if self.destination is not None:
            for _, tag in waiting:
                self.pool._report(SendFailure(tag, self.destination, kind, reason))

    # -- asyncio protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports need not derive from asyncio's.
        stream = cast(asyncio.Transport, transport)
        if self.closed:  # closed while it was connecting: nobody waits for it now
            stream.abort()
            return
        self._stream = stream
        peer = stream.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        self.pool._opened(self)
        waiting, self._waiting = self._waiting, []
        for data, _ in waiting:
            stream.write(data)
        if self.outbound and self.pool.settings.keepalive_interval > 0:
            self._schedule_ping()

    def data_received(self, data: bytes) -> None:
        loop = self.pool.loop
        for event in self.framer.feed(data, loop.time()):
            self._handle(event)
        self._arm_read_timer()

    def eof_received(self) -> bool:
        return False  # a half-closed SIP connection is of no use: close it

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._read_timer, self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._read_timer = self._ping_timer = self._pong_timer = None
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
            if isinstance(exc, ConnectionResetError):
                self.pool._count_failure(self.transport, "reset")
        self.pool._closed(self)

    # -- what the framer found ----------------------------------------------------------

    def _handle(self, event: Frame | Ping | Pong | StreamError) -> None:
        if isinstance(event, Frame):
            self._alive()
            self.pool._deliver(Received(event.data, self.transport, self.peer, self))
        elif isinstance(event, Ping):
            self.write(PONG)
        elif isinstance(event, Pong):
            self._alive()
        else:
            log.info(
                "closing %s connection with %s:%d: %s (%s)",
                self.transport, *self.peer, event.kind, event.detail,
            )  # fmt: skip
            self.pool._count_failure(self.transport, "framing")
            self._abort()

    def _abort(self) -> None:
        self.closed = True
        self.pool._forget(self)
        if self._stream is not None:
            self._stream.abort()

    def _arm_read_timer(self) -> None:
        deadline = self.framer.next_deadline()
        if deadline == self._read_deadline:
            return
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._read_deadline = deadline
        if deadline is not None and not self.closed:
            self._read_timer = self.pool.loop.call_at(deadline, self._read_timeout)

    def _read_timeout(self) -> None:
        self._read_timer = None
        self._read_deadline = None
        for event in self.framer.on_timer(self.pool.loop.time()):
            self._handle(event)
        self._arm_read_timer()

    # -- keep-alive (connections we opened) ------------------------------------------

    def _schedule_ping(self) -> None:
        settings = self.pool.settings
        self._ping_timer = self.pool.loop.call_later(settings.keepalive_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if not self.write(PING):
            return
        if self._pong_timer is None:
            timeout = self.pool.settings.keepalive_timeout
            self._pong_timer = self.pool.loop.call_later(timeout, self._no_pong)
        self._schedule_ping()

    def _alive(self) -> None:
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    def _no_pong(self) -> None:
        self._pong_timer = None
        log.info("closing %s connection with %s:%d: no keep-alive pong", self.transport, *self.peer)
        self.pool._count_failure(self.transport, "keepalive")
        self._abort()

    def __repr__(self) -> str:
        way = "to" if self.outbound else "from"
        state = "up" if self.connected else "closed" if self.closed else "connecting"
        return f"<Connection {self.transport} {way} {self.peer[0]}:{self.peer[1]} {state}>"


_Key = tuple[Transport, str, int, str]


class ConnectionPool:
    """Every TCP/TLS connection of one shard: ours, pooled by target, and the peers'.

    `on_message` gets each `Received` message, from any connection; `on_failure`
    each `SendFailure`. Both are called on the loop, never from inside `send`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Received], None],
        on_failure: Callable[[SendFailure], None],
        *,
        settings: StreamSettings | None = None,
        tls_client: ssl.SSLContext | None = None,
        tls_server: ssl.SSLContext | None = None,
        metrics: ShardMetrics | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings or StreamSettings()
        self._on_message = on_message
        self._on_failure = on_failure
        self._tls_client = tls_client
        self._tls_server = tls_server
        self._metrics = metrics
        self._outbound: dict[_Key, Connection] = {}
        self._inbound: set[Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the driver's API --------------------------------------------------------------

    def send(
        self, data: bytes, destination: Destination, *, server_name: str = "", tag: object = None
    ) -> None:
        """Send `data` to `destination` on its pooled connection, opening one if needed.

        `destination.host` must be an IP address (resolve names first); a port of
        None means 5060 (TCP) or 5061 (TLS). `server_name` is the name the TLS
        server's certificate must carry and the SNI sent: the host of the sips:
        or SIP URI the request was resolved from (RFC 5922); empty means the
        address itself. A failure comes back later through `on_failure` with `tag`.
        """
        transport = destination.transport
        if transport is Transport.UDP:
            raise ValueError("UDP is not a stream transport: send it on the shard's socket")
        if not destination.is_literal:
            raise ValueError(f"resolve {destination.host!r} before sending")
        port = destination.port or DEFAULT_PORTS[transport]
        if port != destination.port:
            destination = Destination(transport, destination.host, port)
        name = (server_name or destination.host) if transport is Transport.TLS else ""
        key = (transport, destination.host, port, name)
        conn = self._outbound.get(key)
        if conn is not None and conn.connected:
            conn.write(data)
            return
        if conn is None or conn.closed or conn._stream is not None:
            if conn is not None:
                self._forget(conn)
            conn = self._connect(key, destination, name)
        conn._queue(data, tag)

    async def listen(self, transport: Transport, host: str, port: int) -> tuple[str, int]:
        """Accept the peers' connections on host:port; return the bound address.

        TLS needs the `tls_server` context (our certificate). Raises OSError when
        the port cannot be bound: a start-up error, like the UDP socket's."""
        if transport is Transport.UDP:
            raise ValueError("UDP has no listener here: it is the shard's socket")
        ctx = None
        if transport is Transport.TLS:
            if self._tls_server is None:
                raise ValueError("a TLS listener needs a certificate (sip.tls.cert_file)")
            ctx = self._tls_server
        server = await self.loop.create_server(
            lambda: Connection(self, transport), host, port, ssl=ctx, reuse_address=True
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def connection_to(self, destination: Destination, server_name: str = "") -> Connection | None:
        """The pooled connection for a target, if there is one (for stats and tests)."""
        port = destination.port or DEFAULT_PORTS[destination.transport]
        name = (server_name or destination.host) if destination.transport is Transport.TLS else ""
        return self._outbound.get((destination.transport, destination.host, port, name))

    def open_count(self) -> int:
        """Connections open now, ours and the peers' (for ``ctl stats``)."""
        return sum(1 for c in self._outbound.values() if c.connected) + len(self._inbound)

    @property
    def inbound(self) -> frozenset[Connection]:
        """The peers' connections open now."""
        return frozenset(self._inbound)

    async def close(self) -> None:
        """Stop listening and close every connection; waiting sends are reported failed."""
        for server in self._servers:
            server.close()
        for conn in [*self._outbound.values(), *self._inbound]:
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- opening ----------------------------------------------------------------------------

    def _connect(self, key: _Key, destination: Destination, server_name: str) -> Connection:
        conn = Connection(
            self, destination.transport, destination=destination, server_name=server_name
        )
        conn.key = key
        self._outbound[key] = conn
        task = self.loop.create_task(self._open(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _open(self, conn: Connection) -> None:
        dest = conn.destination
        assert dest is not None and dest.port is not None
        ctx: ssl.SSLContext | None = None
        if conn.transport is Transport.TLS:
            ctx = self._tls_client
            if ctx is None:
                self._count_failure(conn.transport, "tls")
                conn._failed(FailureKind.TLS, "TLS is not configured in this shard")
                return
        timeout = self.settings.connect_timeout
        extra: dict[str, Any] = {}
        if ctx is not None:
            extra = {"ssl": ctx, "server_hostname": conn.server_name}
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, dest.host, dest.port, **extra), timeout
            )
        except asyncio.CancelledError:
            conn._failed(FailureKind.TRANSPORT, "connection pool closed")
            raise
        except TimeoutError:
            self._count_failure(conn.transport, "timeout")
            conn._failed(FailureKind.TRANSPORT, f"connect timeout after {timeout:g} s")
        except Exception as exc:
            tls = classify_tls_error(exc)
            if tls is not None:
                self._count_failure(conn.transport, "tls")
                if self._metrics is not None:
                    self._metrics.sip_tls_handshake_failures.labels(tls.what).inc()
                conn._failed(FailureKind.TLS, tls.reason)
            else:
                self._count_failure(conn.transport, "connect")
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                conn._failed(FailureKind.TRANSPORT, f"connect to {dest.host}:{dest.port}: {reason}")

    # -- called by the connections ---------------------------------------------------------

    def _opened(self, conn: Connection) -> None:
        if not conn.outbound:
            self._inbound.add(conn)
        if self._metrics is not None:
            way = "outbound" if conn.outbound else "inbound"
            self._metrics.sip_connections_opened.labels(conn.transport.value, way).inc()
            self._metrics.sip_connections.labels(conn.transport.value, way).inc()

    def _closed(self, conn: Connection) -> None:
        """A connection that had been up is gone."""
        self._inbound.discard(conn)
        if self._metrics is not None:
            way = "outbound" if conn.outbound else "inbound"
            self._metrics.sip_connections.labels(conn.transport.value, way).inc(-1)

    def _forget(self, conn: Connection) -> None:
        """Take a closing connection out of the pool so the next send opens a new one."""
        if conn.key is not None:
            if self._outbound.get(conn.key) is conn:
                del self._outbound[conn.key]
        else:
            self._inbound.discard(conn)

    def _deliver(self, received: Received) -> None:
        try:
            self._on_message(received)
        except Exception:
            log.exception("the message handler failed on a message from %s", received.source)

    def _report(self, failure: SendFailure) -> None:
        try:
            self._on_failure(failure)
        except Exception:
            log.exception("the failure handler failed on %s", failure)

    def _count_failure(self, transport: Transport, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.sip_connections_failed.labels(transport.value, reason).inc()
