"""TLS in the connection pool: what is verified and how a failure is reported."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from presence_b2b.presence.status import FailureKind
from presence_b2b.shard.connections import Received
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.tls import client_context, server_context

from tests.peers.stream_pool import PoolHarness
from tests.peers.tls_certs import Pki

LOOPBACK = "127.0.0.1"
OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5071;branch=z9hG4bKx\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
OK = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


class Echo(asyncio.Protocol):
    """Answers every request with OK on the same TLS connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"OPTIONS"):
            self.transport.write(OK)


def answer_options(received: Received) -> None:
    if received.data.startswith(b"OPTIONS"):
        received.reply(OK)


def tls_server(h: PoolHarness, pki: Pki, *names: str) -> Destination:
    server = h.run(h.loop.create_server(Echo, LOOPBACK, 0, ssl=pki.server_context(*names)))
    return Destination(Transport.TLS, LOOPBACK, server.sockets[0].getsockname()[1])


@pytest.fixture
def harness(pki: Pki) -> Iterator[PoolHarness]:
    h = PoolHarness(tls_client=client_context(ca_file=str(pki.ca_file)))
    yield h
    h.close()


def test_a_server_certificate_for_the_address_from_our_ca_is_accepted(
    harness: PoolHarness, pki: Pki
) -> None:
    dest = tls_server(harness, pki, LOOPBACK)
    harness.pool.send(OPTIONS, dest)
    assert harness.wait_for(lambda: bool(harness.received)), harness.failures
    assert harness.received[0].data == OK
    assert harness.received[0].transport is Transport.TLS


def test_the_certificate_must_name_the_server_name_given_for_a_sips_uri(
    harness: PoolHarness, pki: Pki
) -> None:
    dest = tls_server(harness, pki, "presence.test")
    harness.pool.send(OPTIONS, dest, server_name="presence.test")
    assert harness.wait_for(lambda: bool(harness.received)), harness.failures


def test_a_certificate_for_another_host_name_is_a_tls_failure_with_the_reason(
    harness: PoolHarness, pki: Pki
) -> None:
    dest = tls_server(harness, pki, "other.test")
    harness.pool.send(OPTIONS, dest, server_name="presence.test", tag="sub-1")
    assert harness.wait_for(lambda: bool(harness.failures))
    [failure] = harness.failures
    assert (failure.tag, failure.kind) == ("sub-1", FailureKind.TLS)
    assert "certificate verify failed" in failure.reason
    assert "presence.test" in failure.reason


def test_a_certificate_from_an_unknown_ca_is_a_tls_failure(pki: Pki, tmp_path: Path) -> None:
    stranger = Pki(tmp_path / "other")
    h = PoolHarness(tls_client=client_context(ca_file=str(pki.ca_file)))
    try:
        (tmp_path / "other").mkdir(exist_ok=True)
        dest = tls_server(h, stranger, LOOPBACK)
        h.pool.send(OPTIONS, dest)
        assert h.wait_for(lambda: bool(h.failures))
        assert h.failures[0].kind is FailureKind.TLS
        assert "issuer" in h.failures[0].reason
    finally:
        h.close()


def test_with_verify_server_off_any_certificate_is_taken(pki: Pki) -> None:
    h = PoolHarness(tls_client=client_context(verify_server=False))
    try:
        dest = tls_server(h, pki, "other.test")
        h.pool.send(OPTIONS, dest)
        assert h.wait_for(lambda: bool(h.received)), h.failures
    finally:
        h.close()


def test_a_tls_listener_answers_a_request_on_the_connection_it_came_in_on(pki: Pki) -> None:
    files = pki.server(LOOPBACK)
    h = PoolHarness(
        tls_client=client_context(ca_file=str(pki.ca_file)),
        tls_server=server_context(cert_file=str(files.cert), key_file=str(files.key)),
    )
    try:
        h.on_message = answer_options
        _, port = h.run(h.pool.listen(Transport.TLS, LOOPBACK, 0))
        # The pool talks to its own listener: the request arrives inbound, the
        # answer must come back on that connection to the connection we opened.
        dest = Destination(Transport.TLS, LOOPBACK, port)
        h.pool.send(OPTIONS, dest)
        assert h.wait_for(lambda: bool(h.messages(b"SIP/2.0 200"))), h.failures
        [request] = h.messages(b"OPTIONS")
        [answer] = h.messages(b"SIP/2.0 200")
        assert not request.connection.outbound
        assert answer.connection is h.pool.connection_to(dest)
    finally:
        h.close()
