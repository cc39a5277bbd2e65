"""The thin asyncio layer under an :class:`Engine`: its UDP socket and one timer.

Everything with a decision in it lives in the engine; this file feeds it
inputs, hands what :meth:`Engine.take` returns to the shard's :class:`Network`
(UDP, TCP, TLS, names located first) and keeps the one ``call_at`` handle at
the engine's next deadline (moved only when it comes earlier). A datagram that
cannot be sent (an address of the other family, a name that did not resolve, a
connection that failed) goes back to the engine as ``send_failed`` with its
kind: a failure of that request, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from ..presence.status import FailureKind
from ..sip.transaction import ClientTransaction
from .destination import Destination, Transport, address_family
from .engine import Engine
from .network import Network
from .output import Output
from .routing import Hop

log = logging.getLogger(__name__)

# Larger socket buffers absorb NOTIFY bursts (a restart storm answers thousands
# of SUBSCRIBEs within a second); the kernel caps them at net.core.*mem_max.
SOCKET_BUFFER_BYTES = 4 << 20
# Rounds of send failures fed back in one flush; each round's failures only
# arm retry timers, so a second round is rare and a third a bug.
_MAX_ROUNDS = 8

#: Receives each non-empty output (messages, finished ids) and the
#: ``perf_counter`` time the datagram that caused it arrived (None otherwise).
Consumer = Callable[[Output, float | None], None]


def bind_udp(host: str, port: int) -> socket.socket:
    """The shard's SIP socket, bound before the engine exists so errors come early."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def unusable(dest: Hop, family: int) -> str:
    """Why a UDP socket of ``family`` cannot send to ``dest`` ("" when it can)."""
    if not isinstance(dest, Destination):
        return f"{dest.host!r} is a name and there is no resolver"
    if dest.transport is not Transport.UDP:
        return f"no {dest.transport.value.upper()} transport"
    literal = address_family(dest.host)
    if not literal:
        return f"{dest.host!r} is a name and there is no resolver"
    if literal != family:
        ours = 6 if family == socket.AF_INET6 else 4
        return f"{dest.host} is not reachable from an IPv{ours} socket"
    if dest.port is None:
        return f"no port for {dest.host}"
    return ""


class ExtraSocket(asyncio.DatagramProtocol):
    """Another of the shard's UDP sockets (another address): what it receives
    goes to the same engine, through the driver."""

    def __init__(self, driver: EngineDriver) -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.driver.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.driver.error_received(exc)


class EngineDriver(asyncio.DatagramProtocol):
    """Feeds datagrams and timer expiries to the engine and carries out its output."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, family: int = socket.AF_INET
    ) -> None:
        self.loop = loop
        self.engine: Engine | None = None
        self.consumer: Consumer | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._flushing = False
        self._failed_meanwhile = False
        self.network = Network(
            on_failed=self._send_failed, on_message=self._stream_message, hostport=""
        )
        self.network.family = family

    @property
    def family(self) -> int:
        return self.network.family

    def clock(self) -> float:
        """The engine's clock: the loop's."""
        return self.loop.time()

    # asyncio protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's UDPTransport does not derive from
        # asyncio.DatagramTransport, though it has the same sendto/close.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.network.udp = self.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.network.family = sock.family

    def datagram_received(self, data: bytes, addr: Any) -> None:
        engine = self.engine
        if engine is None:
            return
        arrived = time.perf_counter()
        try:
            engine.datagram_received(data, (addr[0], addr[1]))
        finally:
            self.flush(arrived)  # the engine guards its inputs; the timer must survive anyway

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends on a connectionless socket: the
        # transaction's own timers decide what it means.
        log.debug("SIP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.network.udp = None
        self.cancel()

    def _stream_message(
        self, data: bytes, source: tuple[str, int], transport: Transport
    ) -> None:
        """A message from a TCP or TLS connection: like a datagram, answered on it."""
        engine = self.engine
        if engine is None:
            return
        arrived = time.perf_counter()
        try:
            engine.datagram_received(data, source, transport)
        finally:
            self.flush(arrived)

    def _send_failed(self, ref: ClientTransaction | None, detail: str, kind: FailureKind) -> None:
        """A send the network could not make, now or later (a name, a connection)."""
        engine = self.engine
        if engine is None:
            return
        engine.send_failed(ref, detail, kind)
        if self._flushing:
            self._failed_meanwhile = True  # the flush under way takes the output
        else:
            self.flush()

    # output ------------------------------------------------------------------

    def flush(self, arrived: float | None = None) -> None:
        """Carry out the engine's output, feed send failures back, re-arm the timer.
        Call it after every input given to the engine."""
        engine = self.engine
        if engine is None:
            return
        self._flushing = True
        try:
            for _ in range(_MAX_ROUNDS):
                out = engine.take()
                self._failed_meanwhile = False
                failed = False
                for refused, retry_after in out.refused_targets:
                    self.network.target_refused(refused, retry_after)
                for data, dest, ref in out.datagrams:
                    problem = self._send(data, dest, ref)
                    if problem:
                        engine.send_failed(ref, f"send to {dest.host}:{dest.port}: {problem}")
                        failed = True
                if self.consumer is not None and (out.messages or out.finished or out.rested):
                    self.consumer(out, arrived)
                if not failed and not self._failed_meanwhile:
                    self._rearm(out.deadline)
                    return
        finally:
            self._flushing = False
        self._rearm(engine.next_deadline())

    def _send(self, data: bytes, dest: Hop, ref: ClientTransaction | None) -> str:
        """Send one datagram; the reason it could not be sent at once, or ""."""
        return self.network.send(data, dest, ref)

    # timer -------------------------------------------------------------------

    def _rearm(self, deadline: float | None) -> None:
        """Point the one loop timer at the engine's earliest deadline."""
        if deadline is None:
            self.cancel()
            return
        if self._armed_at is not None and self._armed_at <= deadline:
            return  # an earlier wake-up is already set; it will re-arm after firing
        self.cancel()
        self._armed_at = deadline
        self._handle = self.loop.call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = None

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = None
        engine = self.engine
        if engine is None:
            return
        try:
            engine.on_timer()
        finally:
            self.flush()
