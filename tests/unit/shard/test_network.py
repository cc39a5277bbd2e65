"""The network layer's one piece of message surgery: the Via (and, where the
shard listens, the Contact) of a request sent over a stream names that stream;
and the address family a datagram goes out with."""

from __future__ import annotations

import socket

from presence_b2b.shard import destination
from presence_b2b.shard.destination import FAMILIES_MAX, Transport, address_family
from presence_b2b.shard.network import via_for

REQUEST = (
    b"SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport\r\n"
    b"Contact: <sip:127.0.0.1:5070>\r\n\r\n"
)


def test_a_request_over_tcp_names_tcp_in_its_via_and_keeps_its_port() -> None:
    out = via_for(REQUEST, Transport.TCP, "127.0.0.1:5070", "127.0.0.1:5170")
    assert b"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKabc;rport\r\n" in out
    assert b"Contact: <sip:127.0.0.1:5070>" in out


def test_a_request_over_tls_names_tls_and_the_tls_listeners_port() -> None:
    out = via_for(REQUEST, Transport.TLS, "127.0.0.1:5070", "127.0.0.1:5170")
    assert b"Via: SIP/2.0/TLS 127.0.0.1:5170;branch=z9hG4bKabc;rport\r\n" in out


def test_udp_and_responses_are_sent_as_they_are() -> None:
    assert via_for(REQUEST, Transport.UDP, "127.0.0.1:5070", "127.0.0.1:5170") is REQUEST
    response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=x\r\n\r\n"
    assert via_for(response, Transport.TCP, "127.0.0.1:5070", "") == response


def test_the_contact_names_the_stream_when_the_shard_listens_on_it() -> None:
    tcp = via_for(
        REQUEST, Transport.TCP, "127.0.0.1:5070", "127.0.0.1:5170",
        listening=frozenset({Transport.TCP}),
    )
    assert b"Contact: <sip:127.0.0.1:5070;transport=tcp>\r\n" in tcp
    tls = via_for(
        REQUEST, Transport.TLS, "127.0.0.1:5070", "127.0.0.1:5170",
        listening=frozenset({Transport.TCP, Transport.TLS}),
    )
    assert b"Contact: <sips:127.0.0.1:5170>\r\n" in tls


def test_without_a_listener_the_contact_stays_udp() -> None:
    out = via_for(REQUEST, Transport.TLS, "127.0.0.1:5070", "127.0.0.1:5170")
    assert b"Contact: <sip:127.0.0.1:5070>\r\n" in out


def test_a_datagram_goes_out_with_the_family_of_its_address_literal() -> None:
    assert address_family("127.0.0.1") == socket.AF_INET
    assert address_family("[::1]") == address_family("::1") == socket.AF_INET6
    assert address_family("example.com") == 0
    assert address_family("example.com") == 0, "a name is never cached as an address"


def test_the_family_cache_stays_bounded() -> None:
    for i in range(FAMILIES_MAX + 10):
        address_family(f"10.0.{i // 256}.{i % 256}")
    assert len(destination._FAMILIES) <= FAMILIES_MAX
    assert address_family("10.0.0.1") == socket.AF_INET
