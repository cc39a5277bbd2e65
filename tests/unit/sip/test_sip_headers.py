"""Structured header values: what each parser returns and when it refuses."""

from __future__ import annotations

import pytest
from presence_b2b.sip.headers import (
    MAX_DELTA_SECONDS,
    NameAddr,
    SipUri,
    parse_cseq,
    parse_delta_seconds,
    parse_event,
    parse_name_addr,
    parse_params,
    parse_retry_after,
    parse_route,
    parse_subscription_state,
    parse_uri,
    parse_via,
)
from presence_b2b.sip.message import SipParseError, parse_header_line


def test_params_are_lower_cased_names_with_values_or_flags() -> None:
    assert parse_params(';Tag=AbC;lr; expires = 30 ;q="0.5;x"') == {
        "tag": "AbC",
        "lr": None,
        "expires": "30",
        "q": "0.5;x",
    }


def test_name_addr_with_quoted_display_name() -> None:
    addr = parse_name_addr('"Alice \\"A\\" Liddell" <sip:alice@example.com;transport=udp>;tag=x1')
    assert addr == NameAddr(
        'Alice "A" Liddell', "sip:alice@example.com;transport=udp", {"tag": "x1"}
    )
    assert addr.tag == "x1"


def test_name_addr_with_token_display_name() -> None:
    addr = parse_name_addr("Alice <sip:alice@example.com>")
    assert (addr.display, addr.uri, addr.tag) == ("Alice", "sip:alice@example.com", None)


def test_addr_spec_parameters_belong_to_the_header() -> None:
    addr = parse_name_addr("sip:alice@example.com;tag=88")
    assert addr.uri == "sip:alice@example.com"
    assert addr.tag == "88"


def test_name_addr_serialises_with_angle_brackets() -> None:
    addr = parse_name_addr('"A" <sip:a@h>;tag=1;lr')
    assert str(addr) == '"A" <sip:a@h>;tag=1;lr'
    assert parse_name_addr(str(addr)) == addr


@pytest.mark.parametrize(
    "value", ["", "  ", '"unterminated <sip:a@h>', '"A" sip:a@h', "<sip:a@h", "<>"]
)
def test_malformed_name_addr_is_a_header_error(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_name_addr(value)
    assert info.value.kind == "header"


def test_via_gives_transport_sent_by_branch_received_and_rport() -> None:
    via = parse_via(
        "SIP/2.0/udp PC33.example.com:5066;branch=z9hG4bK776;received=1.2.3.4;rport=5070"
    )
    assert (via.protocol, via.transport) == ("SIP/2.0", "UDP")
    assert (via.host, via.port, via.sent_by) == ("pc33.example.com", 5066, "pc33.example.com:5066")
    assert via.branch == "z9hG4bK776"
    assert via.received == "1.2.3.4"
    assert via.rport == 5070


def test_via_tolerates_spaces_in_the_protocol_and_bare_rport() -> None:
    via = parse_via("SIP / 2.0 / UDP [2001:db8::1];rport;branch=z9hG4bKx")
    assert (via.host, via.port, via.rport) == ("[2001:db8::1]", None, None)
    assert "rport" in via.params


@pytest.mark.parametrize("value", ["", "SIP/2.0/UDP", "garbage", "SIP/2.0/UDP host:99999"])
def test_malformed_via_is_a_header_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


def test_cseq_gives_number_and_method() -> None:
    cseq = parse_cseq(" 4711   NOTIFY ")
    assert (cseq.number, cseq.method) == (4711, "NOTIFY")
    assert str(cseq) == "4711 NOTIFY"


@pytest.mark.parametrize("value", ["NOTIFY", "1", "-1 NOTIFY", "4294967296 NOTIFY", "1 A B"])
def test_malformed_cseq_is_a_header_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(value)


def test_subscription_state_tokens_are_case_insensitive() -> None:
    state = parse_subscription_state("Terminated;Reason=Rejected;RETRY-AFTER=30")
    assert (state.value, state.reason, state.retry_after, state.expires) == (
        "terminated",
        "rejected",
        30,
        None,
    )


def test_subscription_state_active_with_expires() -> None:
    state = parse_subscription_state("active;expires=600")
    assert (state.value, state.expires, state.reason) == ("active", 600, None)


def test_bad_subscription_state_parameters_become_none() -> None:
    state = parse_subscription_state("active;expires=soon;retry-after=")
    assert (state.value, state.expires, state.retry_after) == ("active", None, None)


def test_empty_subscription_state_is_a_header_error() -> None:
    with pytest.raises(SipParseError):
        parse_subscription_state(" ;expires=3")


def test_event_gives_package_and_id_kept_as_received() -> None:
    event = parse_event("Presence;id=AbC;x=1")
    assert (event.package, event.id) == ("Presence", "AbC")
    assert not event.matches(parse_event("presence;id=AbC"))
    assert event.matches(parse_event("Presence ; id=AbC"))


def test_expires_is_clamped_to_32_bits() -> None:
    assert parse_delta_seconds(" 3600 ") == 3600
    assert parse_delta_seconds("99999999999999999999999") == MAX_DELTA_SECONDS


@pytest.mark.parametrize("value", ["", "-5", "1.5", "ten", "\u0663"])
def test_bad_delta_seconds_is_a_header_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_delta_seconds(value)


def test_retry_after_with_comment_and_duration() -> None:
    ra = parse_retry_after("18000 (I'm in a meeting) ;duration=3600")
    assert (ra.seconds, ra.comment, ra.duration) == (18000, "I'm in a meeting", 3600)
    assert parse_retry_after("120").seconds == 120


def test_uri_parts_for_routing() -> None:
    assert parse_uri(
        "<sip:Alice;phone=1@P.Example.com:5070;lr;maddr=10.0.0.1?subject=x>"
    ) == SipUri(
        "sip",
        "Alice;phone=1",
        "p.example.com",
        5070,
        {"lr": None, "maddr": "10.0.0.1"},
        headers="subject=x",
    )
    assert parse_uri("sips:[::1]").host == "[::1]"


@pytest.mark.parametrize("value", ["tel:+123", "sip:", "sip:user@", "sip:h:port", "mailto:a@b"])
def test_non_sip_or_broken_uris_are_header_errors(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(value)


def test_a_route_is_its_name_addrs_in_order() -> None:
    route = parse_route('<sip:a.example.com;lr>, "P" <sips:b.example.com:5061;lr>;x=1')
    assert [(r.display, r.uri, r.params) for r in route] == [
        (None, "sip:a.example.com;lr", {}),
        ("P", "sips:b.example.com:5061;lr", {"x": "1"}),
    ]


@pytest.mark.parametrize("value", ["", " , ", "sip:a;lr", "<tel:1>", "<sip:a;lr"])
def test_a_route_needs_sip_uris_in_angle_brackets(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_route(value)


def test_a_header_line_gives_the_canonical_name_and_the_trimmed_value() -> None:
    assert parse_header_line("call-id :  abc \t") == ("Call-ID", "abc")
    assert parse_header_line("X-Empty:") == ("X-Empty", "")


@pytest.mark.parametrize("line", ["no colon", " X-A: folded", "X A: 1", "X-A: 1\r", ": v"])
def test_a_header_line_needs_a_token_name_a_colon_and_one_line(line: str) -> None:
    with pytest.raises(SipParseError) as err:
        parse_header_line(line)
    assert err.value.kind == "header"
