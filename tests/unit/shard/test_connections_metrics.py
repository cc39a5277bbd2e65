"""What the connection pool counts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from presence_b2b.metrics.block import MetricsBlock
from presence_b2b.metrics.shard import ShardMetrics
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.tls import client_context

from tests.peers.stream_pool import PoolHarness
from tests.peers.tls_certs import Pki

OPTIONS = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture
def metrics() -> Iterator[ShardMetrics]:
    block = MetricsBlock.create("0")
    yield ShardMetrics(block)
    block.close()


def test_an_outbound_connection_is_counted_opened_and_open_until_the_peer_closes_it(
    metrics: ShardMetrics,
) -> None:
    h = PoolHarness(metrics=metrics)
    try:
        _, port = h.run(h.pool.listen(Transport.TCP, "127.0.0.1", 0))
        h.pool.send(OPTIONS, Destination(Transport.TCP, "127.0.0.1", port))
        assert h.wait_for(lambda: bool(h.received))
        assert metrics.sip_connections_opened.labels("tcp", "outbound").value == 1
        assert metrics.sip_connections_opened.labels("tcp", "inbound").value == 1
        assert metrics.sip_connections.labels("tcp", "outbound").value == 1
        h.received[0].connection.close()  # our listener's side of it
        assert h.wait_for(lambda: metrics.sip_connections.labels("tcp", "outbound").value == 0)
        assert metrics.sip_connections.labels("tcp", "inbound").value == 0
    finally:
        h.close()


def test_a_refused_connect_counts_as_failed_to_connect(metrics: ShardMetrics) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    h = PoolHarness(metrics=metrics)
    try:
        h.pool.send(OPTIONS, Destination(Transport.TCP, "127.0.0.1", port))
        assert h.wait_for(lambda: bool(h.failures))
        assert metrics.sip_connections_failed.labels("tcp", "connect").value == 1
    finally:
        h.close()


def test_a_refused_certificate_counts_as_a_tls_failure_and_a_certificate_failure(
    metrics: ShardMetrics, tmp_path: Path
) -> None:
    pki = Pki(tmp_path)
    h = PoolHarness(metrics=metrics, tls_client=client_context(ca_file=str(pki.ca_file)))
    try:
        server = h.run(
            h.loop.create_server(
                asyncio.Protocol,
                "127.0.0.1",
                0,
                ssl=pki.server_context("other.test"),
            )
        )
        dest = Destination(Transport.TLS, "127.0.0.1", server.sockets[0].getsockname()[1])
        h.pool.send(OPTIONS, dest)
        assert h.wait_for(lambda: bool(h.failures))
        assert metrics.sip_connections_failed.labels("tls", "tls").value == 1
        assert metrics.sip_tls_handshake_failures.labels("certificate").value == 1
        server.close()
    finally:
        h.close()
