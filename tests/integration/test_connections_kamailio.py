"""The TCP/TLS connection pool against Kamailio on 127.0.0.1.

Hand-built SUBSCRIBEs and PUBLISHes go through the pool; Kamailio answers on
our connection and sends its NOTIFYs to the Contact, which names our listener:
it opens its own connection for them, and our 200 goes back on that one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from presence_b2b.presence.status import FailureKind
from presence_b2b.shard.connections import Received, StreamSettings
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.tls import client_context, server_context
from presence_b2b.sip.message import Request, parse_message

from tests.peers.kamailio_tls import KamailioStreamServer, tls_missing
from tests.peers.ports import LOOPBACK
from tests.peers.stream_pool import PoolHarness
from tests.peers.tls_certs import Pki

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def kamailio_streams(pki: Pki) -> Iterator[KamailioStreamServer]:
    why = tls_missing()
    if why is not None:
        pytest.skip(why)
    server = KamailioStreamServer(pki)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


class Client:
    """The pool with listeners on both stream transports; answers every NOTIFY 200."""

    def __init__(self, pki: Pki, tmp: Path, settings: StreamSettings | None = None) -> None:
        ours = Pki(tmp)  # our listener's certificate: Kamailio does not check it
        files = ours.server(LOOPBACK)
        self.h = PoolHarness(
            settings=settings,
            tls_client=client_context(ca_file=str(pki.ca_file)),
            tls_server=server_context(cert_file=str(files.cert), key_file=str(files.key)),
        )
        self.ports = {
            t: self.h.run(self.h.pool.listen(t, LOOPBACK, 0))[1]
            for t in (Transport.TCP, Transport.TLS)
        }
        self.answered: list[tuple[Received, bool]] = []
        self.h.on_message = self._answer

    def _answer(self, received: Received) -> None:
        if received.data.startswith(b"NOTIFY"):
            notify = parse_message(received.data)
            self.answered.append((received, received.reply(ok_for(notify))))

    def responses(self, call_id: str) -> list[int]:
        codes = []
        for r in self.h.messages(b"SIP/2.0 "):
            msg = parse_message(r.data)
            if msg.get("Call-ID") == call_id and not isinstance(msg, Request):
                codes.append(msg.status)
        return codes

    def notifies(self, call_id: str) -> list[Received]:
        return [
            r for r in self.h.messages(b"NOTIFY") if parse_message(r.data).get("Call-ID") == call_id
        ]


@pytest.fixture
def client(pki: Pki, tmp_path: Path) -> Iterator[Client]:
    c = Client(pki, tmp_path)
    yield c
    c.h.close()


def ok_for(request: Request) -> bytes:
    """A 200 to Kamailio's request, its Vias and dialog headers copied."""
    lines = ["SIP/2.0 200 OK", *(f"Via: {v}" for v in request.get_all("Via"))]
    lines += [f"{name}: {request.get(name)}" for name in ("From", "To", "Call-ID", "CSeq")]
    return "\r\n".join([*lines, "Content-Length: 0", "", ""]).encode()


def request(
    method: str,
    user: str,
    transport: Transport,
    kamailio: KamailioStreamServer,
    client: Client,
    *,
    call_id: str,
    headers: str = "",
    body: bytes = b"",
) -> bytes:
    """A request from watcher@127.0.0.1 whose Via and Contact name our listener."""
    t = transport.value
    port = client.ports[transport]
    kport = kamailio.tls_port if transport is Transport.TLS else kamailio.port
    head = (
        f"{method} sip:{user}@{LOOPBACK}:{kport};transport={t} SIP/2.0\r\n"
        f"Via: SIP/2.0/{t.upper()} {LOOPBACK}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:watcher@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{user}@{LOOPBACK}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:watcher@{LOOPBACK}:{port};transport={t}>\r\n"
        f"{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def subscribe(
    user: str, transport: Transport, kamailio: KamailioStreamServer, client: Client
) -> tuple[bytes, str]:
    call_id = f"sub-{uuid.uuid4().hex}"
    headers = "Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 60\r\n"
    return request(
        "SUBSCRIBE", user, transport, kamailio, client, call_id=call_id, headers=headers
    ), call_id


def target(kamailio: KamailioStreamServer, transport: Transport) -> Destination:
    port = kamailio.tls_port if transport is Transport.TLS else kamailio.port
    return Destination(transport, LOOPBACK, port)


def subscribed(
    user: str, transport: Transport, kamailio: KamailioStreamServer, client: Client
) -> tuple[str, Received]:
    """SUBSCRIBE through the pool (TLS checked against "presence.test"); the first NOTIFY."""
    data, call_id = subscribe(user, transport, kamailio, client)
    client.h.pool.send(data, target(kamailio, transport), server_name="presence.test")
    assert client.h.wait_for(lambda: bool(client.notifies(call_id))), (
        client.h.failures,
        kamailio.log_tail(),
    )
    return call_id, client.notifies(call_id)[0]


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS])
def test_a_subscribe_through_the_pool_gets_200_and_a_notify_we_answer(
    kamailio_streams: KamailioStreamServer, client: Client, transport: Transport
) -> None:
    call_id, notify = subscribed(f"ann-{transport}", transport, kamailio_streams, client)
    assert client.responses(call_id) == [200]
    assert notify.transport is transport
    assert client.h.failures == []


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS])
def test_a_notify_on_kamailio_s_own_connection_is_answered_on_that_connection(
    kamailio_streams: KamailioStreamServer, client: Client, transport: Transport
) -> None:
    _, notify = subscribed(f"bea-{transport}", transport, kamailio_streams, client)
    [written] = [ok for r, ok in client.answered if r is notify]
    assert not notify.connection.outbound  # Kamailio connected to our listener
    assert notify.connection in client.h.pool.inbound
    assert written


def test_a_certificate_that_does_not_name_the_server_is_a_tls_failure_with_the_reason(
    kamailio_streams: KamailioStreamServer, client: Client
) -> None:
    data, _ = subscribe("cid", Transport.TLS, kamailio_streams, client)
    client.h.pool.send(
        data, target(kamailio_streams, Transport.TLS), server_name="elsewhere.test", tag=7
    )
    assert client.h.wait_for(lambda: bool(client.h.failures))
    [failure] = client.h.failures
    assert (failure.tag, failure.kind) == (7, FailureKind.TLS)
    assert "certificate verify failed" in failure.reason
    assert "elsewhere.test" in failure.reason


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS])
def test_a_connection_kamailio_closed_is_reopened_for_the_next_request(
    kamailio_streams: KamailioStreamServer, client: Client, transport: Transport
) -> None:
    dest = target(kamailio_streams, transport)
    closing = request(
        "OPTIONS",
        "dee",
        transport,
        kamailio_streams,
        client,
        call_id="close-me",
        headers="X-Close: 1\r\n",
    )
    client.h.pool.send(closing, dest, server_name="presence.test")
    first = client.h.pool.connection_to(dest, "presence.test")
    assert first is not None
    assert client.h.wait_for(lambda: client.responses("close-me") == [200])
    assert client.h.wait_for(lambda: first.closed), "Kamailio did not close the connection"
    data, call_id = subscribe(f"dee-{transport}", transport, kamailio_streams, client)
    client.h.pool.send(data, dest, server_name="presence.test")
    assert client.h.wait_for(lambda: client.responses(call_id) == [200]), (
        kamailio_streams.log_tail()
    )
    assert client.h.pool.connection_to(dest, "presence.test") not in (None, first)
    assert client.h.failures == []


def test_a_20_kb_notify_is_framed_whole(
    kamailio_streams: KamailioStreamServer, client: Client
) -> None:
    note = "x" * 20_000
    pidf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:eve@127.0.0.1">'
        f'<tuple id="t1"><status><basic>open</basic></status><note>{note}</note></tuple>'
        "</presence>"
    ).encode()
    dest = target(kamailio_streams, Transport.TCP)
    publish = request(
        "PUBLISH", "eve", Transport.TCP, kamailio_streams, client, call_id="pub-eve",
        headers="Event: presence\r\nExpires: 60\r\nContent-Type: application/pidf+xml\r\n",
        body=pidf,
    )  # fmt: skip
    client.h.pool.send(publish, dest)
    assert client.h.wait_for(lambda: client.responses("pub-eve") == [200]), (
        kamailio_streams.log_tail()
    )
    _, notify = subscribed("eve", Transport.TCP, kamailio_streams, client)
    assert len(notify.data) > 20_000
    assert note.encode() in parse_message(notify.data).body


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.TLS])
def test_kamailio_answers_our_keep_alive_pings_so_the_connection_stays(
    kamailio_streams: KamailioStreamServer, pki: Pki, tmp_path: Path, transport: Transport
) -> None:
    client = Client(pki, tmp_path, StreamSettings(keepalive_interval=0.1, keepalive_timeout=0.3))
    try:
        dest = target(kamailio_streams, transport)
        probe = request("OPTIONS", "fay", transport, kamailio_streams, client, call_id="ka")
        client.h.pool.send(probe, dest, server_name="presence.test")
        conn = client.h.pool.connection_to(dest, "presence.test")
        assert conn is not None
        assert client.h.wait_for(lambda: client.responses("ka") == [200])
        # A dozen pings, each of which would close the connection without a pong.
        assert not client.h.wait_for(lambda: conn.closed, timeout=1.5)
        assert client.h.pool.connection_to(dest, "presence.test") is conn
    finally:
        client.h.close()
