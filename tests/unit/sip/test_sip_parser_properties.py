"""Property tests: the parser round-trips what we write and never fails unexpectedly."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from presence_b2b.sip import headers as h
from presence_b2b.sip.message import (
    COMPACT_FORMS,
    Message,
    Request,
    Response,
    SipParseError,
    canonical_name,
    parse_message,
)
from sip_samples import notify_bytes, subscribe_bytes

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"

tokens = st.text(alphabet=TOKEN, min_size=1, max_size=12)
# Header names as stored: canonical, never Content-Length (derived from the body).
header_names = st.one_of(
    st.sampled_from(sorted(set(COMPACT_FORMS.values()) - {"Content-Length"})),
    tokens.map(canonical_name).filter(lambda n: n != "Content-Length"),
)
# Values as stored after parsing: no line breaks, no surrounding blanks.
header_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
    max_size=40,
).map(lambda v: v.strip(" \t"))
header_lists = st.lists(st.tuples(header_names, header_values), max_size=12)
bodies = st.binary(max_size=200)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    uri = draw(st.text(alphabet=TOKEN + ":@;=", min_size=1, max_size=30))
    return Request(draw(tokens), uri, draw(header_lists), draw(bodies))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    reason = draw(header_values)
    status = draw(st.integers(100, 699))
    return Response(status, reason, draw(header_lists), draw(bodies))


def parses_or_fails_cleanly(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    assert isinstance(msg, Request | Response)
    msg.to_bytes()


@given(st.one_of(requests(), responses()))
def test_parse_of_serialise_gives_the_same_message(msg: Message) -> None:
    assert parse_message(msg.to_bytes()) == msg


@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    parses_or_fails_cleanly(data)


@given(st.lists(st.sampled_from([b"SIP/2.0 ", b"200", b" OK", b"\r\n", b"\n", b":", b" ",
    b"Content-Length", b"l", b"12", b"Via", b",", b"<", b">", b'"', b"\t", b"\r", b"NOTIFY",
    b"sip:a@b", b"SIP/2.0", b"\xff"]), max_size=40).map(b"".join))  # fmt: skip
def test_sip_like_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    parses_or_fails_cleanly(data)


samples = st.sampled_from([notify_bytes(), subscribe_bytes(), notify_bytes().replace(b"\r", b"")])


@given(samples, st.data())
def test_messages_cut_at_any_point_parse_or_raise_sip_parse_error(
    data: bytes, draw: st.DataObject
) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    parses_or_fails_cleanly(data[:cut])
    parses_or_fails_cleanly(data[cut:])


@given(samples, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_messages_with_a_corrupted_byte_parse_or_raise_sip_parse_error(
    data: bytes, draw: st.DataObject
) -> None:
    pos = draw.draw(st.integers(0, len(data) - 1))
    byte = draw.draw(st.integers(0, 255))
    parses_or_fails_cleanly(data[:pos] + bytes([byte]) + data[pos + 1 :])


HEADER_PARSERS: list[Callable[[str], object]] = [
    h.parse_name_addr,
    h.parse_via,
    h.parse_uri,
    h.parse_cseq,
    h.parse_subscription_state,
    h.parse_event,
    h.parse_retry_after,
    h.parse_delta_seconds,
    h.parse_params,
]

header_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(['"', "<", ">", ";", "=", ":", "@", "sip", "[", "]", " ", "\\",
        "tag", "5060", "SIP/2.0/UDP", "/", "?", ",", "1", "(", ")"]), max_size=20).map("".join),
)  # fmt: skip


@given(st.sampled_from(HEADER_PARSERS), header_texts)
def test_header_parsers_return_or_raise_sip_parse_error(
    parser: Callable[[str], object], text: str
) -> None:
    try:
        value = parser(text)
    except SipParseError:
        return
    str(value)
