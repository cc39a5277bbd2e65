"""UAC dialog of a SUBSCRIBE usage: creation, confirmation, target refresh, routing."""

from __future__ import annotations

import pytest
from presence_b2b.sip.dialog import (
    CSeqOutOfOrder,
    Dialog,
    build_initial_request,
    next_hop,
    parse_route_set,
    resolve_uri,
)
from presence_b2b.sip.headers import parse_cseq
from presence_b2b.sip.message import Request, Response, SipParseError
from presence_b2b.sip.transaction import make_response


def initial(route: str | list[str] = "") -> Request:
    return build_initial_request(
        "SUBSCRIBE",
        "sip:alice@example.com",
        from_uri="sip:b2b@example.com",
        from_tag="ltag",
        call_id="cid@10.0.0.1",
        via_sent_by="10.0.0.1:5070",
        branch="z9hG4bK1",
        route=route,
        headers=[("Event", "presence"), ("Expires", "3600")],
    )


def ok_for(
    request: Request,
    *,
    record_route: tuple[str, ...] = (),
    contact: str = "<sip:alice@10.0.0.2:5062>",
) -> Response:
    resp = make_response(request, 200, to_tag="rtag")
    for rr in record_route:
        resp.add("Record-Route", rr)
    if contact:
        resp.add("Contact", contact)
    return resp


def notify_for(
    dialog: Dialog,
    *,
    cseq: int = 1,
    contact: str = "<sip:alice@10.0.0.2:5062>",
    rr: tuple[str, ...] = (),
) -> Request:
    req = Request(
        "NOTIFY",
        "sip:b2b@10.0.0.1:5070",
        [
            ("Via", "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKn"),
            ("From", "<sip:alice@example.com>;tag=rtag"),
            ("To", f"<sip:b2b@example.com>;tag={dialog.local_tag}"),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} NOTIFY"),
            ("Contact", contact),
        ],
    )
    for value in rr:
        req.add("Record-Route", value)
    return req


def test_initial_request_has_the_usual_header_set() -> None:
    req = initial()
    assert req.uri == "sip:alice@example.com"
    assert req.headers[:6] == [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1"),
        ("Max-Forwards", "70"),
        ("From", "<sip:b2b@example.com>;tag=ltag"),
        ("To", "<sip:alice@example.com>"),
        ("Call-ID", "cid@10.0.0.1"),
        ("CSeq", "1 SUBSCRIBE"),
    ]
    assert req.get("Event") == "presence"


def test_initial_request_keeps_a_multi_hop_preset_route_in_order() -> None:
    req = initial("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    assert req.uri == "sip:alice@example.com"
    assert req.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert next_hop(req) == ("p1.example.com", 5060)


def test_initial_request_with_a_strict_first_hop_puts_it_in_the_request_uri() -> None:
    req = initial("<sip:strict.example.com>")
    assert req.uri == "sip:strict.example.com"
    assert req.get_all("Route") == ["<sip:alice@example.com>"]
    assert next_hop(req) == ("strict.example.com", 5060)


def test_a_strict_first_hop_before_loose_ones_needs_the_dialog_to_find_the_next_hop() -> None:
    # From the request alone this looks loose-routed (first Route has ;lr); the
    # dialog, given the preset route set, knows better.
    preset = ["sip:strict.example.com", "sip:p2.example.com;lr"]
    req = initial([f"<{uri}>" for uri in preset])
    assert req.uri == "sip:strict.example.com"
    assert req.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:alice@example.com>"]
    dialog = Dialog.from_request(req, route_set=preset, remote_target="sip:alice@example.com")
    assert next_hop(dialog) == ("strict.example.com", 5060)


def test_dialog_from_the_initial_request_is_unconfirmed() -> None:
    dialog = Dialog.from_request(initial("<sip:p1.example.com;lr>"))
    assert dialog.id == ("cid@10.0.0.1", "ltag", None)
    assert (dialog.local_uri, dialog.remote_uri) == ("sip:b2b@example.com", "sip:alice@example.com")
    assert dialog.remote_target == "sip:alice@example.com"
    assert dialog.route_set == ["sip:p1.example.com;lr"]
    assert (dialog.local_cseq, dialog.remote_cseq, dialog.confirmed) == (1, None, False)


def test_2xx_confirms_with_to_tag_contact_and_reversed_record_route() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    assert dialog.confirm(ok_for(req, record_route=("<sip:p2;lr>", "<sip:p1;lr>")))
    assert dialog.confirmed
    assert dialog.remote_tag == "rtag"
    assert dialog.remote_target == "sip:alice@10.0.0.2:5062"
    assert dialog.route_set == ["sip:p1;lr", "sip:p2;lr"]


def test_without_record_route_the_preset_route_is_dropped_as_rfc_3261_says() -> None:
    req = initial("<sip:p1.example.com;lr>")
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    assert dialog.route_set == []


def test_the_preset_route_can_be_kept_as_the_original_did() -> None:
    req = initial("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    dialog = Dialog.from_request(req, keep_preset_route=True)
    dialog.confirm(ok_for(req))
    assert dialog.route_set == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]


def test_2xx_without_to_tag_is_an_error() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    with pytest.raises(SipParseError):
        dialog.confirm(make_response(req, 200))


def test_notify_before_the_2xx_confirms_the_dialog() -> None:
    dialog = Dialog.from_request(initial())
    notify = notify_for(dialog, cseq=7, rr=("<sip:p1;lr>", "<sip:p2;lr>"))
    assert dialog.matches(notify)
    dialog.confirm_from_notify(notify)
    assert dialog.confirmed
    assert dialog.remote_tag == "rtag"
    assert dialog.route_set == ["sip:p1;lr", "sip:p2;lr"]  # in order, not reversed
    assert dialog.remote_target == "sip:alice@10.0.0.2:5062"
    assert dialog.remote_cseq == 7


def test_a_2xx_after_the_notify_only_refreshes_the_target() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm_from_notify(notify_for(dialog, rr=("<sip:p1;lr>",)))
    assert dialog.confirm(ok_for(req, record_route=("<sip:other;lr>",), contact="<sip:a@10.0.0.9>"))
    assert dialog.route_set == ["sip:p1;lr"]
    assert dialog.remote_target == "sip:a@10.0.0.9"


def test_a_2xx_from_another_fork_is_ignored() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    other = ok_for(req, contact="<sip:fork@10.0.0.7>")
    other.set("To", "<sip:alice@example.com>;tag=fork2")
    assert not dialog.confirm(other)
    assert dialog.remote_target == "sip:alice@10.0.0.2:5062"


def test_in_order_notify_refreshes_the_target_and_out_of_order_does_not() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    assert dialog.update_from_request(notify_for(dialog, cseq=5, contact="<sip:a@10.0.0.3>"))
    assert (dialog.remote_cseq, dialog.remote_target) == (5, "sip:a@10.0.0.3")
    with pytest.raises(CSeqOutOfOrder):
        dialog.update_from_request(notify_for(dialog, cseq=4, contact="<sip:a@10.0.0.4>"))
    assert not dialog.update_from_request(notify_for(dialog, cseq=5, contact="<sip:a@10.0.0.4>"))
    assert (dialog.remote_cseq, dialog.remote_target) == (5, "sip:a@10.0.0.3")


def test_refresh_2xx_refreshes_the_target() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    dialog.update_from_response(ok_for(req, contact="<sip:moved@10.0.0.5>"))
    assert dialog.remote_target == "sip:moved@10.0.0.5"


def test_notifies_of_other_dialogs_do_not_match() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    other_tag = notify_for(dialog)
    other_tag.set("From", "<sip:alice@example.com>;tag=nope")
    other_call = notify_for(dialog)
    other_call.set("Call-ID", "else")
    assert dialog.matches(notify_for(dialog))
    assert not dialog.matches(other_tag)
    assert not dialog.matches(other_call)


def test_in_dialog_request_increments_cseq_and_carries_both_tags() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    refresh = dialog.build_request(
        "SUBSCRIBE", [("Expires", "3600")], via_sent_by="10.0.0.1:5070", branch="z9hG4bK2"
    )
    again = dialog.build_request("SUBSCRIBE", via_sent_by="10.0.0.1:5070", branch="z9hG4bK3")
    assert parse_cseq(refresh.get("CSeq") or "").number == 2
    assert parse_cseq(again.get("CSeq") or "").number == 3
    assert refresh.uri == "sip:alice@10.0.0.2:5062"
    assert refresh.get("From") == "<sip:b2b@example.com>;tag=ltag"
    assert refresh.get("To") == "<sip:alice@example.com>;tag=rtag"
    assert refresh.get("Call-ID") == "cid@10.0.0.1"
    assert refresh.get("Expires") == "3600"
    assert "Route" not in refresh


def test_loose_route_keeps_the_target_in_the_request_uri() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req, record_route=("<sip:p2;lr>", "<sip:p1:5080;lr>")))
    refresh = dialog.build_request("SUBSCRIBE", via_sent_by="h", branch="z9hG4bK2")
    assert refresh.uri == "sip:alice@10.0.0.2:5062"
    assert refresh.get_all("Route") == ["<sip:p1:5080;lr>", "<sip:p2;lr>"]
    assert next_hop(refresh) == next_hop(dialog) == ("p1", 5080)


def test_strict_route_puts_the_first_route_in_the_request_uri_and_the_target_last() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req, record_route=("<sip:p2;lr>", "<sip:strict?x=y>")))
    refresh = dialog.build_request("SUBSCRIBE", via_sent_by="h", branch="z9hG4bK2")
    assert refresh.uri == "sip:strict"
    assert refresh.get_all("Route") == ["<sip:p2;lr>", "<sip:alice@10.0.0.2:5062>"]
    assert next_hop(dialog) == ("strict", 5060)


def test_outbound_proxy_is_the_next_hop_when_set() -> None:
    req = initial("<sip:p1.example.com;lr>")
    assert next_hop(req, outbound_proxy="sip:127.0.0.1:5090;transport=udp") == ("127.0.0.1", 5090)
    assert next_hop(req, outbound_proxy="<sip:[::1]>") == ("::1", 5060)


def test_next_hop_is_the_request_uri_without_routes() -> None:
    assert next_hop(initial()) == ("example.com", 5060)


def test_uri_resolution_defaults_and_maddr() -> None:
    assert resolve_uri("sip:a@10.1.1.1") == ("10.1.1.1", 5060)
    assert resolve_uri("sips:a@h.example.com") == ("h.example.com", 5061)
    assert resolve_uri("sip:a@[2001:db8::5]:5070") == ("2001:db8::5", 5070)
    assert resolve_uri("sip:a@h;maddr=10.9.9.9") == ("10.9.9.9", 5060)


def test_route_set_accepts_one_header_value_or_a_list() -> None:
    assert parse_route_set("<sip:a;lr>,<sip:b;lr>") == ["sip:a;lr", "sip:b;lr"]
    assert parse_route_set(["<sip:a;lr>", "sip:b"]) == ["sip:a;lr", "sip:b"]
    assert parse_route_set("") == []


@pytest.mark.parametrize(
    ("record_route", "contact"),
    [
        (("<sip:p1;lr>", "<tel:+123>"), "<sip:a@10.0.0.2>"),
        (("<sip:p1:99999;lr>",), "<sip:a@10.0.0.2>"),
        ((), "<http://example.com/>"),
    ],
)
def test_a_2xx_with_an_unusable_route_or_target_refuses_the_dialog_and_changes_nothing(
    record_route: tuple[str, ...], contact: str
) -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    before = (dialog.remote_tag, dialog.route_set, dialog.remote_target, dialog.confirmed)
    with pytest.raises(SipParseError):
        dialog.confirm(ok_for(req, record_route=record_route, contact=contact))
    assert (dialog.remote_tag, dialog.route_set, dialog.remote_target, dialog.confirmed) == before


def test_a_target_refresh_to_an_unusable_contact_is_refused_and_the_old_target_kept() -> None:
    req = initial()
    dialog = Dialog.from_request(req)
    dialog.confirm(ok_for(req))
    target = dialog.remote_target
    with pytest.raises(SipParseError):
        dialog.update_from_request(notify_for(dialog, cseq=7, contact="<mailto:a@b>"))
    assert (dialog.remote_target, dialog.remote_cseq) == (target, None)
