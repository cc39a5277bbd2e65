"""The TCP/TLS connection pool against small stream peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from presence_b2b.presence.status import FailureKind
from presence_b2b.shard.connections import StreamSettings
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.network import Network
from presence_b2b.sip.framing import PING, FramingLimits
from presence_b2b.sip.message import Request, parse_message
from presence_b2b.sip.transaction import ClientTransaction

from tests.peers.stream_pool import PoolHarness

LOOPBACK = "127.0.0.1"
OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
OK = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"


class Peer(asyncio.Protocol):
    """One accepted connection of `StreamServer`: records what it reads."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.data = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.peers.append(self)

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.server.answer_pings and self.data.endswith(PING):
            assert self.transport is not None
            self.transport.write(b"\r\n")


class StreamServer:
    """A TCP peer on the harness's loop: counts connections, records bytes."""

    def __init__(self, harness: PoolHarness, *, answer_pings: bool = True) -> None:
        self.peers: list[Peer] = []
        self.answer_pings = answer_pings
        self.server = harness.run(harness.loop.create_server(lambda: Peer(self), LOOPBACK, 0))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.destination = Destination(Transport.TCP, LOOPBACK, self.port)


@pytest.fixture
def harness() -> Iterator[PoolHarness]:
    h = PoolHarness()
    yield h
    h.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def test_every_send_to_one_target_shares_one_connection(harness: PoolHarness) -> None:
    peer = StreamServer(harness)
    for n in range(3):
        harness.pool.send(OPTIONS, peer.destination, tag=n)
    assert harness.wait_for(lambda: peer.peers and peer.peers[0].data == OPTIONS * 3)
    assert len(peer.peers) == 1


def test_a_response_on_our_connection_reaches_the_callback_with_its_source(
    harness: PoolHarness,
) -> None:
    peer = StreamServer(harness)
    harness.pool.send(OPTIONS, peer.destination)
    assert harness.wait_for(lambda: bool(peer.peers and peer.peers[0].data))
    assert peer.peers[0].transport is not None
    peer.peers[0].transport.write(OK[:20])
    peer.peers[0].transport.write(OK[20:])
    assert harness.wait_for(lambda: bool(harness.received))
    [got] = harness.received
    assert (got.data, got.transport, got.source) == (OK, Transport.TCP, (LOOPBACK, peer.port))


def test_a_refused_connection_reports_each_waiting_send_as_a_transport_failure(
    harness: PoolHarness,
) -> None:
    dest = Destination(Transport.TCP, LOOPBACK, closed_port())
    harness.pool.send(OPTIONS, dest, tag="a")
    harness.pool.send(OPTIONS, dest, tag="b")
    assert harness.wait_for(lambda: len(harness.failures) == 2)
    assert [(f.tag, f.kind) for f in harness.failures] == [
        ("a", FailureKind.TRANSPORT),
        ("b", FailureKind.TRANSPORT),
    ]
    assert "refused" in harness.failures[0].reason.lower()


def test_a_connection_the_peer_closed_is_reopened_for_the_next_send(
    harness: PoolHarness,
) -> None:
    peer = StreamServer(harness)
    harness.pool.send(OPTIONS, peer.destination)
    assert harness.wait_for(lambda: bool(peer.peers and peer.peers[0].data))
    first = harness.pool.connection_to(peer.destination)
    assert peer.peers[0].transport is not None
    peer.peers[0].transport.close()
    assert harness.wait_for(lambda: first is not None and first.closed)
    harness.pool.send(OPTIONS, peer.destination)
    assert harness.wait_for(lambda: len(peer.peers) == 2 and peer.peers[1].data == OPTIONS)
    assert harness.failures == []


def test_a_connect_that_hangs_fails_after_the_connect_timeout() -> None:
    h = PoolHarness(settings=StreamSettings(connect_timeout=0.2))
    try:
        # A listening socket with a full backlog that never accepts: SYNs go unanswered.
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            sock.listen(0)
            dest = Destination(Transport.TCP, LOOPBACK, sock.getsockname()[1])
            fillers = [_start_connect(sock.getsockname()) for _ in range(4)]
            h.pool.send(OPTIONS, dest, tag="t")
            assert h.wait_for(lambda: bool(h.failures), timeout=3)
            for f in fillers:
                f.close()
        [failure] = h.failures
        assert failure.kind is FailureKind.TRANSPORT
        assert "timeout" in failure.reason
    finally:
        h.close()


def test_connections_we_open_send_crlf_pings_at_the_keepalive_interval() -> None:
    h = PoolHarness(settings=StreamSettings(keepalive_interval=0.1))
    try:
        peer = StreamServer(h)
        h.pool.send(OPTIONS, peer.destination)
        assert h.wait_for(lambda: bool(peer.peers) and peer.peers[0].data.count(PING) >= 2)
        assert h.pool.connection_to(peer.destination) is not None
    finally:
        h.close()


def test_a_connection_whose_ping_gets_no_pong_is_closed_and_replaced() -> None:
    h = PoolHarness(settings=StreamSettings(keepalive_interval=0.1, keepalive_timeout=0.1))
    try:
        peer = StreamServer(h, answer_pings=False)
        h.pool.send(OPTIONS, peer.destination)
        assert h.wait_for(lambda: bool(peer.peers))
        first = h.pool.connection_to(peer.destination)
        assert h.wait_for(lambda: first is not None and first.closed)
        assert h.pool.connection_to(peer.destination) is None
    finally:
        h.close()


def test_a_stream_that_cannot_be_framed_closes_the_connection(harness: PoolHarness) -> None:
    peer = StreamServer(harness)
    harness.pool.send(OPTIONS, peer.destination)
    assert harness.wait_for(lambda: bool(peer.peers))
    conn = harness.pool.connection_to(peer.destination)
    assert peer.peers[0].transport is not None
    peer.peers[0].transport.write(b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n")  # no length
    assert harness.wait_for(lambda: conn is not None and conn.closed)
    assert harness.received == []


def test_a_partial_message_is_dropped_with_its_connection_after_the_read_timeout() -> None:
    h = PoolHarness(settings=StreamSettings(limits=FramingLimits(read_timeout=0.2)))
    try:
        peer = StreamServer(h)
        h.pool.send(OPTIONS, peer.destination)
        assert h.wait_for(lambda: bool(peer.peers))
        conn = h.pool.connection_to(peer.destination)
        assert peer.peers[0].transport is not None
        peer.peers[0].transport.write(OK[:30])
        assert h.wait_for(lambda: conn is not None and conn.closed, timeout=2)
    finally:
        h.close()


def test_a_request_on_an_inbound_connection_is_answered_on_that_connection(
    harness: PoolHarness,
) -> None:
    host, port = harness.run(harness.pool.listen(Transport.TCP, LOOPBACK, 0))
    harness.on_message = lambda r: r.reply(OK)
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(OPTIONS)
        assert harness.wait_for(lambda: bool(harness.received))
        client.setblocking(False)
        got = bytearray()
        assert harness.wait_for(lambda: got.extend(_recv(client)) or bytes(got) == OK)
        [received] = harness.received
        assert received.source == client.getsockname()


def test_an_inbound_ping_is_answered_with_a_pong(harness: PoolHarness) -> None:
    host, port = harness.run(harness.pool.listen(Transport.TCP, LOOPBACK, 0))
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(PING)
        client.setblocking(False)
        buf = bytearray()
        assert harness.wait_for(lambda: buf.extend(_recv(client)) or bytes(buf) == b"\r\n")


def test_a_reply_on_a_connection_that_is_gone_says_so(harness: PoolHarness) -> None:
    host, port = harness.run(harness.pool.listen(Transport.TCP, LOOPBACK, 0))
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(OPTIONS)
        assert harness.wait_for(lambda: bool(harness.received))
    [received] = harness.received
    assert harness.wait_for(lambda: received.connection.closed)
    assert received.reply(OK) is False


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65535)
    except BlockingIOError:
        return b""


def _start_connect(address: tuple[str, int]) -> socket.socket:
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(address)
    return client


def _transaction(data: bytes) -> ClientTransaction:
    """The client transaction of a request the network is asked to send."""
    request = parse_message(data)
    assert isinstance(request, Request)
    return ClientTransaction(request)


def test_a_request_over_1300_bytes_for_udp_goes_over_tcp_to_the_same_port(
    harness: PoolHarness,
) -> None:
    server = StreamServer(harness)
    failures: list[str] = []
    network = Network(
        on_failed=lambda ref, detail, kind: failures.append(detail),
        on_message=lambda data, source, transport: None,
        hostport="127.0.0.1:5070",
    )
    network.pool = harness.pool
    big = OPTIONS.replace(b"Via: SIP/2.0/TCP", b"Via: SIP/2.0/UDP").replace(
        b"Content-Length: 0\r\n\r\n", b"X-Pad: " + b"p" * 1400 + b"\r\nContent-Length: 0\r\n\r\n"
    )
    ref = _transaction(big)
    assert network.send(big, Destination(Transport.UDP, LOOPBACK, server.port), ref) == ""
    assert harness.wait_for(lambda: bool(server.peers) and len(server.peers[0].data) >= len(big))
    assert b"Via: SIP/2.0/TCP 127.0.0.1:5070;" in server.peers[0].data
    assert failures == []


def test_a_request_sent_over_tcp_is_not_retransmitted_on_it(harness: PoolHarness) -> None:
    server = StreamServer(harness)
    network = Network(
        on_failed=lambda ref, detail, kind: None,
        on_message=lambda data, source, transport: None,
        hostport="127.0.0.1:5070",
    )
    network.pool = harness.pool
    ref = _transaction(OPTIONS)
    for _ in range(3):  # the first send, then two timer E retransmissions
        assert network.send(OPTIONS, server.destination, ref) == ""
    assert harness.wait_for(
        lambda: bool(server.peers) and len(server.peers[0].data) >= len(OPTIONS)
    )
    harness.run(asyncio.sleep(0.1))
    assert server.peers[0].data == OPTIONS, "a reliable transport retransmits nothing"
