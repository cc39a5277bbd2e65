"""The thin asyncio layer under an :class:`Engine`: one UDP socket and one timer.

Everything with a decision in it lives in the engine; this file only moves
datagrams in and out and wakes the engine at its next deadline. One
``call_at`` handle serves every transaction and subscription timer of the
shard: it is re-armed only when the engine's earliest deadline moves earlier.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from .engine import Address, Engine

log = logging.getLogger(__name__)

# Larger socket buffers absorb NOTIFY bursts (a restart storm answers thousands
# of SUBSCRIBEs within a second); the kernel caps them at net.core.*mem_max.
SOCKET_BUFFER_BYTES = 4 << 20


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


class EngineDriver(asyncio.DatagramProtocol):
    """Feeds datagrams and timer expiries to the engine and carries out its sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.engine: Engine | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self.after_event: Callable[[], None] | None = None

    # The engine's injected callables ----------------------------------------

    def clock(self) -> float:
        return self.loop.time()

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is None:
            raise OSError("SIP socket is closed")
        self.transport.sendto(data, addr)

    # asyncio protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's UDPTransport does not derive from
        # asyncio.DatagramTransport, though it has the same sendto/close.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            engine.datagram_received(data, (addr[0], addr[1]))
        except Exception:
            log.exception("engine failed on a datagram from %s", addr)
        self.rearm()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends on a connectionless socket: the
        # transaction's own timers decide what it means.
        log.debug("SIP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.cancel()

    # timer -------------------------------------------------------------------

    def rearm(self) -> None:
        """Point the one loop timer at the engine's earliest deadline."""
        engine = self.engine
        if engine is None:
            return
        deadline = engine.next_deadline()
        if self.after_event is not None:
            self.after_event()
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
        except Exception:
            log.exception("engine failed in a timer")
        self.rearm()


async def open_driver(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> tuple[EngineDriver, asyncio.DatagramTransport]:
    """Wrap a bound socket; attach the engine to ``driver.engine`` afterwards."""
    driver = EngineDriver(loop)
    transport, _ = await loop.create_datagram_endpoint(lambda: driver, sock=sock)
    return driver, transport
