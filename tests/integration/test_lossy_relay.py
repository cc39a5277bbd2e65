"""The chaos suite's lossy relay does what it is told: drops, duplicates, delays
and reorders datagrams both ways, rewrites the Contact so the server's requests
come back through it, and counts what it did."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.peers.lossy_relay import Impairment, RelayProcess, _rewrite_contact

pytestmark = pytest.mark.integration

COUNT = 200


class EchoServer:
    """Sends every datagram back to where it came from, with its arrival order."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.got.append(data)
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def exchange(relay: RelayProcess, count: int = COUNT, settle: float = 0.5) -> list[bytes]:
    """Send ``count`` numbered datagrams through the relay; what came back (read
    while sending, so the socket's buffer never overflows)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(settle)
    back: list[bytes] = []

    def read() -> None:
        while True:
            try:
                back.append(client.recv(65535))
            except TimeoutError:
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(count):
            client.sendto(b"%d" % n, ("127.0.0.1", relay.port))
            time.sleep(0.0005)
        reader.join()
        return back
    finally:
        client.close()


def test_a_clean_relay_forwards_everything_both_ways_in_order(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port)
    back = exchange(relay)
    counts = relay.stop()
    assert back == [b"%d" % n for n in range(COUNT)]
    assert counts["forwarded"] == 2 * COUNT and counts["dropped"] == 0


def test_dropping_everything_delivers_nothing(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port, drop=1.0)
    assert exchange(relay) == []
    assert relay.stop()["dropped"] == COUNT
    assert echo.got == []


def test_a_drop_rate_drops_about_that_share_each_way(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port, drop=0.2)
    back = exchange(relay, count=1000)
    counts = relay.stop()
    assert 0.7 * 800 < len(echo.got) < 1.3 * 800, "about 80 % reach the server"
    assert 0.7 * 640 < len(back) < 1.3 * 640, "about 80 % of those come back"
    assert counts["dropped"] + counts["forwarded"] == counts["received"]


def test_duplicating_everything_doubles_each_way(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port, duplicate=1.0)
    back = exchange(relay, count=50)
    relay.stop()
    assert len(echo.got) == 100
    assert len(back) == 200


def test_a_delay_holds_each_datagram_back(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port, delay_ms=150)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2.0)
    sent = time.monotonic()
    client.sendto(b"ping", ("127.0.0.1", relay.port))
    assert client.recv(100) == b"ping"
    took = time.monotonic() - sent
    client.close()
    relay.stop()
    assert took >= 0.3, "150 ms each way"


def test_reordering_lets_later_datagrams_overtake(echo: EchoServer) -> None:
    relay = RelayProcess(echo.port, reorder=0.3, delay_ms=5, seed=7)
    back = exchange(relay, count=100, settle=1.0)
    counts = relay.stop()
    assert sorted(back, key=int) == [b"%d" % n for n in range(100)]
    assert back != sorted(back, key=int)
    assert counts["reordered"] > 0


def test_the_contact_port_is_rewritten_to_the_relays_back_socket() -> None:
    request = (
        b"SUBSCRIBE sip:a@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z\r\n"
        b"Contact: <sip:127.0.0.1:5070>\r\nContent-Length: 4\r\n\r\n5070"
    )
    out = _rewrite_contact(request, 5070, 40000)
    assert b"Contact: <sip:127.0.0.1:40000>" in out
    assert b"Via: SIP/2.0/UDP 127.0.0.1:5070;" in out, "only the Contact"
    assert out.endswith(b"\r\n\r\n5070"), "never the body"


def test_probabilities_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        Impairment(drop=1.5)
