"""Building SUBSCRIBEs and naming their destinations."""

from __future__ import annotations

import dataclasses

from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.requester import LocalEndpoint, Requester
from presence_b2b.shard.resolver import SipTarget

from presence_b2b.config import B2BParams, SipSettings

RECORD = "sip:alice@192.0.2.1:5090"
LOCAL = LocalEndpoint("127.0.0.1", 5070)


def _requester(**params: object) -> Requester:
    return Requester(
        dataclasses.replace(B2BParams(), **params),  # type: ignore[arg-type]
        SipSettings(),
        LOCAL,
    )


def _udp(host: str, port: int) -> Destination:
    return Destination(Transport.UDP, host, port)


def test_an_initial_subscribe_goes_to_the_record_and_its_dialog_matches_it() -> None:
    req, dialog, dest, key = _requester().initial(RECORD, "sip:bob@x", None, 600)
    assert dest == _udp("192.0.2.1", 5090)
    assert (req.uri, req.get("Expires"), req.get("Call-ID")) == (RECORD, "600", dialog.call_id)
    assert key[1] == "SUBSCRIBE" and key[0] in (req.get("Via") or "")


def test_a_redirect_target_replaces_the_request_uri_but_not_the_to() -> None:
    req, _, dest, _ = _requester().initial(RECORD, "sip:bob@x", "sip:a@192.0.2.7", 600)
    assert (req.uri, dest) == ("sip:a@192.0.2.7", _udp("192.0.2.7", 5060))
    assert RECORD in (req.get("To") or "")


def test_a_host_name_stays_a_name_for_the_driver_to_resolve() -> None:
    _, _, dest, _ = _requester().initial("sip:alice@example.com", "sip:bob@x", None, 600)
    assert dest == SipTarget("example.com")  # no port, no transport: SRV and NAPTR decide


def test_a_named_transport_and_port_stay_with_the_name() -> None:
    uri = "sip:alice@example.com:5080;transport=tcp"
    _, _, dest, _ = _requester().initial(uri, "sip:bob@x", None, 600)
    assert dest == SipTarget("example.com", 5080, Transport.TCP)


def test_an_ip_literal_with_transport_tcp_is_a_tcp_destination() -> None:
    uri = "sip:alice@192.0.2.1;transport=tcp"
    _, _, dest, _ = _requester().initial(uri, "sip:bob@x", None, 600)
    assert dest == Destination(Transport.TCP, "192.0.2.1", 5060)


def test_a_sips_ip_literal_is_tls_on_5061() -> None:
    _, _, dest, _ = _requester().initial("sips:alice@192.0.2.1", "sip:bob@x", None, 600)
    assert dest == Destination(Transport.TLS, "192.0.2.1", 5061)


def test_the_outbound_proxy_takes_initial_and_routeless_in_dialog_subscribes() -> None:
    r = _requester(presence_outbound_proxy="sip:192.0.2.9:5080")
    _, dialog, dest, _ = r.initial(RECORD, "sip:bob@x", None, 600)
    assert dest == _udp("192.0.2.9", 5080)
    assert r.in_dialog(dialog, 600)[1] == _udp("192.0.2.9", 5080)
    dialog.route_set = ["sip:192.0.2.5;lr"]
    req, dest = r.in_dialog(dialog, 0)
    assert dest == _udp("192.0.2.5", 5060)
    assert req.get("Expires") == "0" and req.get("Route") == "<sip:192.0.2.5;lr>"


def test_each_in_dialog_subscribe_takes_the_next_cseq() -> None:
    r = _requester()
    _, dialog, _, _ = r.initial(RECORD, "sip:bob@x", None, 600)
    first, _ = r.in_dialog(dialog, 600)
    second, _ = r.in_dialog(dialog, 600)
    assert (first.get("CSeq"), second.get("CSeq")) == ("2 SUBSCRIBE", "3 SUBSCRIBE")
