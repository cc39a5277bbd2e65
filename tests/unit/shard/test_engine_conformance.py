"""RFC 3261 / 6665 / 3581 rules the engine keeps, on a fake clock."""

from __future__ import annotations

from engine_harness import RECORD, SERVER, Harness, at, probe
from presence_b2b.presence.status import Failure, FailureKind, Status
from presence_b2b.sip.headers import parse_tag, parse_via
from presence_b2b.sip.message import Request, Response


def _last_response(h: Harness) -> Response:
    return h.responses()[-1]


def test_a_notify_whose_event_has_an_id_our_subscribe_did_not_is_answered_481() -> None:
    h = Harness()
    first = h.established()
    n = h.notify_request(first, "active;expires=600")
    n.set("Event", "presence;id=42")
    h.feed(n)
    assert _last_response(h).status == 481
    assert len(h.delivered) == 1  # only the first NOTIFY's status


def test_a_notify_with_a_cseq_below_the_last_one_gets_500_and_is_not_delivered() -> None:
    h = Harness()
    first = h.established()
    h.notify(first, "active;expires=600")
    late = h.notify_request(first, "active;expires=600")
    late.set("CSeq", "1 NOTIFY")
    h.feed(late)
    assert _last_response(h).status == 500
    assert len(h.delivered) == 2


def test_options_200_carries_a_to_tag_allow_and_accept() -> None:
    h = Harness()
    h.feed(probe())
    resp = _last_response(h)
    assert resp.status == 200
    assert parse_tag(resp.get("To") or "")
    assert resp.get("Allow") == "NOTIFY, OPTIONS"
    assert resp.get("Accept") == "application/pidf+xml, multipart/related, application/rlmi+xml"


def test_405_and_481_to_out_of_dialog_requests_carry_a_to_tag() -> None:
    h = Harness()
    h.feed(probe("MESSAGE"))
    resp = _last_response(h)
    assert (resp.status, resp.get("Allow")) == (405, "NOTIFY, OPTIONS")
    assert parse_tag(resp.get("To") or "")
    stray = probe("NOTIFY", ("Event", "presence"), ("Subscription-State", "active"))
    h.feed(stray)
    resp = _last_response(h)
    assert resp.status == 481 and parse_tag(resp.get("To") or "")


def test_an_unknown_require_gets_420_naming_it_in_unsupported() -> None:
    h = Harness()
    h.feed(probe("OPTIONS", ("Require", "foo, bar")))
    resp = _last_response(h)
    assert resp.status == 420
    assert resp.get("Unsupported") == "foo, bar"


def test_a_request_shorter_than_its_content_length_gets_400() -> None:
    h = Harness()
    data = probe().to_bytes().replace(b"Content-Length: 0", b"Content-Length: 50")
    h.datagram(data)
    assert _last_response(h).status == 400


def test_responses_fill_in_rport_and_received_for_the_source_address() -> None:
    h = Harness()
    h.feed(probe(via_params=";rport"), addr=("127.0.0.1", 40000))
    resp, dest = h.sent[-1]
    assert isinstance(resp, Response)
    via = parse_via(resp.get("Via") or "")
    assert (via.params.get("rport"), via.received) == ("40000", "127.0.0.1")
    assert dest == at("127.0.0.1", 40000)


def test_received_is_added_when_the_sent_by_is_not_the_source() -> None:
    h = Harness()
    req = probe()
    req.set("Via", "SIP/2.0/UDP 10.9.9.9:5090;branch=z9hG4bKnat")
    h.feed(req)
    assert parse_via(_last_response(h).get("Via") or "").received == "127.0.0.1"


def test_a_response_whose_via_is_not_ours_alone_is_dropped() -> None:
    h = Harness()
    h.subscribe(1)
    req = h.requests()[-1]
    resp = Response(200, "OK")
    resp.add("Via", "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKother")
    resp.add("Via", req.get("Via") or "")
    for name in ("From", "Call-ID", "CSeq"):
        resp.add(name, req.get(name) or "")
    resp.add("To", f"{req.get('To')};tag=x")
    h.feed(resp)
    wrong_host = Response(200, "OK")
    wrong_host.add("Via", (req.get("Via") or "").replace("5070", "5071"))
    for name in ("From", "Call-ID", "CSeq"):
        wrong_host.add(name, req.get(name) or "")
    wrong_host.add("To", f"{req.get('To')};tag=x")
    h.feed(wrong_host)
    assert h.engine.snapshot(1)["state"] == "unconfirmed"  # type: ignore[index]
    assert h.obs.counts["parse_error", "header"] == 2


def test_a_2xx_without_a_to_tag_refuses_the_dialog_as_a_transport_failure() -> None:
    h = Harness()
    h.subscribe(1)
    req = h.requests()[-1]
    resp = Response(200, "OK")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        resp.add(name, req.get(name) or "")
    h.feed(resp)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TRANSPORT
    assert failure.retry_in is not None


def test_a_2xx_with_an_unusable_record_route_refuses_the_dialog_cleanly() -> None:
    h = Harness()
    h.subscribe(1)
    h.answer(h.requests()[-1], 200, ("Record-Route", "<tel:+123>"))
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TRANSPORT
    assert h.engine.usage(1).dialog is None  # dropped: later NOTIFYs get 481
    h.advance(200)
    assert len(h.requests()) >= 2  # retried on a new dialog


def test_a_3xx_passes_sip_contacts_by_q_and_drops_the_others() -> None:
    h = Harness()
    h.subscribe(1)
    h.answer(
        h.requests()[-1], 302,
        ("Contact", "<sip:low@127.0.0.1:5091>;q=0.1"),
        ("Contact", "<mailto:x@y>"),
        ("Contact", "<sip:high@127.0.0.1:5092>;q=0.9, <sips:mid@127.0.0.1:5093>;q=0.5"),
        ("Contact", "<sip:same@127.0.0.1:5094>;q=0.9"),
    )
    assert h.requests()[-1].uri == "sip:high@127.0.0.1:5092"


def test_a_302_without_a_sip_contact_is_an_error_not_a_redirect() -> None:
    h = Harness()
    h.subscribe(1)
    h.answer(h.requests()[-1], 302, ("Contact", "<tel:+1>"))
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.SIP_ERROR
    assert len(h.requests()) == 1


def test_a_non_utf8_reason_phrase_reaches_the_failure_as_valid_text() -> None:
    h = Harness()
    h.subscribe(2)
    req = h.requests()[-1]
    raw = (
        b"SIP/2.0 503 Unavail\xffable\r\n"
        + b"".join(
            f"{n}: {req.get(n)}\r\n".encode() for n in ("Via", "From", "Call-ID", "CSeq")
        )
        + f"To: {req.get('To')};tag=z\r\nContent-Length: 0\r\n\r\n".encode()
    )
    h.datagram(raw)
    failure = h.delivered[-1]
    assert isinstance(failure, Failure) and failure.id == 2
    failure.detail.encode("utf-8")  # raises if a lone surrogate got through


def test_a_non_utf8_content_type_reaches_the_status_as_valid_text() -> None:
    h = Harness()
    first = h.established()
    n = h.notify_request(first, "active;expires=600", b"<x/>")
    data = n.to_bytes().replace(b"application/pidf+xml", b"application/p\xe9df+xml")
    h.datagram(data)
    status = h.delivered[-1]
    assert isinstance(status, Status)
    status.content_type.encode("utf-8")


def test_in_dialog_subscribes_go_to_the_remote_target_without_a_proxy() -> None:
    h = Harness()
    first = h.established()
    h.refresh(1)
    req, dest = h.sent[-1]
    assert isinstance(req, Request) and req.get("Call-ID") == first.get("Call-ID")
    assert dest == at(*SERVER)
    assert req.uri == "sip:127.0.0.1:5090" and RECORD in (req.get("To") or "")
