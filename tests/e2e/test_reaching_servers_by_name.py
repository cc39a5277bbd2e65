"""Presence servers named by DNS (RFC 3263), through ``presence-b2b serve``.

A real dnsmasq on the loopback serves each test's zone; SIPp plays the
presence server over UDP or TCP. The service is told only the DNS server
(``[dns] servers``) and the records' names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import watch_json
from tests.peers.dns import DnsServer, dnsmasq_binary
from tests.peers.kamailio_tls import KamailioStreamServer, tls_missing
from tests.peers.ports import free_tcp_port, free_udp_port
from tests.peers.tls_certs import Pki

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(dnsmasq_binary() is None, reason="dnsmasq (dnsmasq-base) is not installed"),
]

SUBSCRIBER = "sip:watcher@example.com"


@pytest.fixture
def dns() -> Iterator[list[DnsServer]]:
    started: list[DnsServer] = []
    yield started
    for server in started:
        server.stop()
        server.cleanup()


def zone(dns: list[DnsServer], lines: str) -> DnsServer:
    server = DnsServer(lines + "local=/test/\n").start()
    dns.append(server)
    return server


def watch(control_socket: str, record: str, count: int, *extra: str) -> list[dict[str, Any]]:
    code, lines, stderr = watch_json(
        control_socket, record, *extra, subscriber=SUBSCRIBER, count=count
    )
    assert code == 0, stderr
    return lines


def test_a_record_named_by_srv_is_reached_over_udp(service, sipp_uas, dns):
    uas = sipp_uas("uas_basic", recv_timeout_ms=60_000, expires=60, note="by name")
    server = zone(
        dns,
        f"srv-host=_sip._udp.pres.test,sipp.pres.test,{uas.port},10,10\n"
        "host-record=sipp.pres.test,127.0.0.1\n",
    )
    svc = service(shards=1, config={"dns": {"servers": [server.server]}})
    [line] = watch(svc.control_socket, "sip:alice@pres.test", 1)
    assert (line["kind"], line["state"], line["notes"]) == ("status", "active", ["by name"])
    assert line["entity"] == "sip:alice@pres.test"
    assert any("_sip._udp.pres.test" in q for q in server.queries())


def test_a_udp_target_that_never_answers_is_left_for_the_next_one(service, sipp_uas, dns):
    uas = sipp_uas("uas_basic", recv_timeout_ms=60_000, expires=60, note="second target")
    silent = free_udp_port()  # nothing listens: the SUBSCRIBE goes unanswered
    server = zone(
        dns,
        f"srv-host=_sip._udp.pres.test,silent.pres.test,{silent},10,10\n"
        f"srv-host=_sip._udp.pres.test,sipp.pres.test,{uas.port},20,10\n"
        "host-record=silent.pres.test,127.0.0.1\n"
        "host-record=sipp.pres.test,127.0.0.1\n",
    )
    svc = service(shards=1, config={"dns": {"servers": [server.server]}})
    # sip.t1 is 0.1 s in these services: the silent target has 0.8 s, well inside
    # Timer F (6.4 s), so the subscription starts without any failure.
    [line] = watch(svc.control_socket, "sip:alice@pres.test", 1)
    assert (line["kind"], line["notes"]) == ("status", ["second target"])
    [subscribe] = uas.received("SUBSCRIBE")[:1]
    assert subscribe.header("CSeq").startswith("1 ")


def test_a_target_that_answers_503_is_left_for_the_next_one(service, sipp_uas, dns):
    busy = sipp_uas("uas_503", recv_timeout_ms=60_000, retry_after=30)
    uas = sipp_uas("uas_basic", recv_timeout_ms=60_000, expires=60, note="after a 503")
    server = zone(
        dns,
        f"srv-host=_sip._udp.pres.test,busy.pres.test,{busy.port},10,10\n"
        f"srv-host=_sip._udp.pres.test,sipp.pres.test,{uas.port},20,10\n"
        "host-record=busy.pres.test,127.0.0.1\n"
        "host-record=sipp.pres.test,127.0.0.1\n",
    )
    svc = service(shards=1, config={"dns": {"servers": [server.server]}})
    [line] = watch(svc.control_socket, "sip:alice@pres.test", 1)
    assert (line["kind"], line["notes"]) == ("status", ["after a 503"])
    busy.expect_success(timeout=10)  # it got its one SUBSCRIBE and answered 503
    [first] = uas.received("SUBSCRIBE")[:1]
    assert first.header("CSeq").startswith("2 "), "the same request, the next CSeq"


def test_a_shard_on_ipv4_and_ipv6_reaches_an_aaaa_target(service, sipp_uas, dns):
    uas = sipp_uas(
        "uas_basic", recv_timeout_ms=60_000, expires=60, note="over IPv6",
        extra_args=("-i", "::1"),
    )
    server = zone(
        dns,
        f"srv-host=_sip._udp.v6.test,sipp.v6.test,{uas.port},10,10\n"
        "host-record=sipp.v6.test,::1\n",
    )
    svc = service(
        shards=1,
        config={"dns": {"servers": [server.server]}, "sip": {"listen": ["127.0.0.1", "::1"]}},
    )
    [line] = watch(svc.control_socket, "sip:alice@v6.test", 1)
    assert (line["kind"], line["notes"]) == ("status", ["over IPv6"])


def test_a_name_that_does_not_exist_is_a_dns_failure_then_a_retry(service, dns):
    server = zone(dns, "host-record=other.test,127.0.0.1\n")
    svc = service(
        shards=1,
        config={"dns": {"servers": [server.server]}, "presence_b2b": {"on_error_retry_time": 1}},
    )
    _, lines, stderr = watch_json(
        svc.control_socket, "sip:alice@nowhere.test", subscriber=SUBSCRIBER, timeout=4
    )
    errors = [x for x in lines if x["kind"] == "error"]
    assert len(errors) >= 2, (lines, stderr)  # the failure, and the one of the retry
    first = errors[0]
    assert first["error_kind"] == "dns"
    assert "nowhere.test" in str(first["detail"]) and "nxdomain" in str(first["detail"])
    assert first["retry_in"] == 1
    assert svc.running()


def test_naptr_picks_tcp_and_a_dead_first_target_fails_over_to_the_next(
    service, sipp_uas, dns
):
    uas = sipp_uas(
        "uas_dialog_info", recv_timeout_ms=60_000, expires=60, extra_args=("-t", "t1")
    )
    dead = free_tcp_port()  # nothing listens there: the connection is refused
    server = zone(
        dns,
        "naptr-record=tcp.test,10,50,s,SIP+D2T,,_sip._tcp.tcp.test\n"
        f"srv-host=_sip._tcp.tcp.test,dead.tcp.test,{dead},10,10\n"
        f"srv-host=_sip._tcp.tcp.test,live.tcp.test,{uas.port},20,10\n"
        "host-record=dead.tcp.test,127.0.0.1\n"
        "host-record=live.tcp.test,127.0.0.1\n",
    )
    svc = service(shards=1, config={"dns": {"servers": [server.server]}})
    [line] = watch(svc.control_socket, "sip:alice@tcp.test", 1, "--event", "dialog")
    assert line["state"] == "active"
    document = line["document"]
    assert isinstance(document, dict) and document["type"] == "dialog-info"
    [subscribe] = [m for m in uas.received("SUBSCRIBE")][:1]
    assert "SIP/2.0/TCP" in subscribe.header("Via")
    stats = json.loads(svc.ctl("--json", "stats").stdout)
    assert stats["shards"][0]["connections"] >= 1, "the connection to SIPp stays pooled"


@pytest.fixture
def kamailio_tls(tmp_path) -> Iterator[tuple[KamailioStreamServer, Pki]]:
    why = tls_missing()
    if why is not None:
        pytest.skip(why)
    pki = Pki(tmp_path / "pki")
    server = KamailioStreamServer(pki, cert_names=("presence.test",))
    server.start()
    try:
        yield server, pki
    finally:
        server.cleanup()


def tls_names(dns: list[DnsServer]) -> DnsServer:
    return zone(dns, "host-record=presence.test,127.0.0.1\nhost-record=wrong.test,127.0.0.1\n")


def tls_service(service, dns: list[DnsServer], pki: Pki):  # type: ignore[no-untyped-def]
    """One shard that trusts the test CA and asks the zone of tls_names."""
    server = tls_names(dns)
    return service(
        shards=1,
        config={"dns": {"servers": [server.server]}, "sip.tls": {"ca_file": str(pki.ca_file)}},
    )


def test_a_sips_record_is_reached_over_tls_with_its_certificate_checked(
    service, dns, kamailio_tls
):
    kamailio, pki = kamailio_tls
    svc = tls_service(service, dns, pki)
    [line] = watch(svc.control_socket, f"sips:alice@presence.test:{kamailio.tls_port}", 1)
    assert (line["kind"], line["state"]) == ("status", "active"), line


def test_a_certificate_for_another_name_is_a_tls_failure_with_the_reason(
    service, dns, kamailio_tls
):
    kamailio, pki = kamailio_tls
    svc = tls_service(service, dns, pki)
    _, lines, stderr = watch_json(
        svc.control_socket, f"sips:alice@wrong.test:{kamailio.tls_port}",
        subscriber=SUBSCRIBER, timeout=5,
    )
    assert lines and lines[0]["kind"] == "error", (lines, stderr)
    assert lines[0]["error_kind"] == "tls"
    assert "wrong.test" in str(lines[0]["detail"]) or "certificate" in str(lines[0]["detail"])
