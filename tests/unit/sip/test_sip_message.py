"""Message parsing and serialising: what the parser accepts, rejects and produces."""

from __future__ import annotations

import pytest
from presence_b2b.sip.message import (
    Request,
    Response,
    SipParseError,
    parse_message,
    require,
    split_list,
    split_quoted,
)
from sip_samples import PIDF, notify_bytes


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def parse_response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def error_kind(data: bytes, **kwargs: int) -> str:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kwargs)
    return info.value.kind


MINIMAL_RESPONSE = b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_request_line_gives_method_and_uri() -> None:
    msg = parse_request(notify_bytes())
    assert msg.method == "NOTIFY"
    assert msg.uri == "sip:b2b@10.0.0.1:5070"
    assert msg.body == PIDF


def test_status_line_gives_status_and_reason_with_spaces() -> None:
    msg = parse_response(b"SIP/2.0 481 Call/Transaction Does Not Exist\r\n\r\n")
    assert msg.status == 481
    assert msg.reason == "Call/Transaction Does Not Exist"


def test_empty_reason_phrase_is_accepted() -> None:
    assert parse_response(b"SIP/2.0 200\r\n\r\n").reason == ""


def test_compact_header_forms_are_expanded() -> None:
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: cid\r\nf: <sip:a@h>;tag=1\r\n"
        b"t: <sip:b@h>\r\nm: <sip:a@h>\r\nc: text/plain\r\ne: gzip\r\nk: path\r\n"
        b"s: hi\r\no: presence\r\nu: presence\r\nr: <sip:c@h>\r\nb: <sip:d@h>\r\n"
        b"x: 90\r\nl: 2\r\n\r\nok"
    )
    names = [name for name, _ in parse_message(data).headers]
    assert names == [
        "Via", "Call-ID", "From", "To", "Contact", "Content-Type", "Content-Encoding",
        "Supported", "Subject", "Event", "Allow-Events", "Refer-To", "Referred-By",
        "Session-Expires",
    ]  # fmt: skip
    assert parse_message(data).body == b"ok"


def test_header_lookup_is_case_insensitive() -> None:
    msg = parse_request(notify_bytes())
    assert msg.get("call-id") == msg.get("CALL-ID") == msg.get("i") == "a84b4c76e66710@10.0.0.1"
    assert "subscription-state" in msg


def test_unknown_header_names_are_found_whatever_their_case() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\r\nx-sipp-FOO: 1\r\n\r\n")
    assert msg.get("X-SIPP-foo") == "1"
    assert msg.headers == [("X-Sipp-Foo", "1")]


def test_get_returns_the_first_value_and_get_all_every_value() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\r\nWarning: 1\r\nSubject: a\r\nSubject: b\r\n\r\n")
    assert msg.get("Subject") == "a"
    assert msg.get_all("Subject") == ["a", "b"]
    assert msg.get("Expires") is None
    assert msg.get_all("Expires") == []


def test_comma_joined_via_values_are_split() -> None:
    msg = parse_response(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b\r\n"
        b"Via: SIP/2.0/UDP c\r\n\r\n"
    )
    assert msg.get_all("Via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]


def test_commas_inside_quotes_and_angle_brackets_do_not_split_contacts() -> None:
    msg = parse_response(
        b'SIP/2.0 200 OK\r\nContact: "Doe, John" <sip:j@h;x=a,b>;q=0.5, <sip:k@h>\r\n\r\n'
    )
    assert msg.get_all("Contact") == ['"Doe, John" <sip:j@h;x=a,b>;q=0.5', "<sip:k@h>"]


def test_escaped_quote_inside_display_name_does_not_end_the_quotes() -> None:
    msg = parse_response(b'SIP/2.0 200 OK\r\nContact: "a \\" ,b" <sip:j@h>, <sip:k@h>\r\n\r\n')
    assert msg.get_all("Contact") == ['"a \\" ,b" <sip:j@h>', "<sip:k@h>"]


def test_headers_that_are_not_lists_keep_their_commas() -> None:
    msg = parse_response(
        b'SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm="a", nonce="b"\r\n'
        b"Subject: one, two\r\n\r\n"
    )
    assert msg.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert msg.get_all("Subject") == ["one, two"]


def test_lf_only_line_ends_are_accepted() -> None:
    data = notify_bytes().replace(b"\r\n", b"\n")
    msg = parse_request(data)
    assert msg.get("CSeq") == "2 NOTIFY"
    assert msg.body == PIDF


def test_mixed_line_ends_are_accepted() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\nCall-ID: x\r\nCSeq: 1 A\n\r\nbody")
    assert msg.get("CSeq") == "1 A"
    assert msg.body == b"body"


def test_the_head_ends_at_the_first_empty_line_whichever_line_end_made_it() -> None:
    lf_first = parse_response(b"SIP/2.0 200 OK\nCSeq: 1 A\n\n\r\nbody")
    assert lf_first.get("CSeq") == "1 A" and lf_first.body == b"\r\nbody"
    crlf_first = parse_response(b"SIP/2.0 200 OK\r\nCSeq: 1 A\r\n\r\nbody\n\nmore")
    assert crlf_first.get("CSeq") == "1 A" and crlf_first.body == b"body\n\nmore"


def test_folded_header_lines_are_joined_with_a_space() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\r\nSubject: I know\r\n   you're\r\n\tthere\r\n\r\n")
    assert msg.get("Subject") == "I know you're there"


def test_whitespace_around_header_names_and_values_is_ignored() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\r\nCall-ID  :   abc  \r\n\r\n")
    assert msg.get("Call-ID") == "abc"


def test_content_length_padded_with_spaces_is_accepted() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\r\nContent-Length:     4   \r\n\r\nbody")
    assert msg.body == b"body"


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    assert parse_response(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nrest\r\n").body == b"rest\r\n"


def test_body_longer_than_content_length_is_cut_to_content_length() -> None:
    assert parse_response(b"SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nokjunk").body == b"ok"


def test_body_shorter_than_content_length_is_truncated() -> None:
    assert error_kind(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nshort") == "truncated"


def test_bad_content_length_is_rejected() -> None:
    assert error_kind(b"SIP/2.0 200 OK\r\nContent-Length: ten\r\n\r\n") == "content-length"
    assert error_kind(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n") == "content-length"


def test_equal_duplicate_content_lengths_are_accepted() -> None:
    # The original module's SUBSCRIBEs carry two Content-Length: 0.
    data = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\nl: 0\r\n\r\n"
    assert parse_response(data).body == b""


def test_conflicting_content_lengths_are_rejected() -> None:
    data = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\nContent-Length: 2\r\n\r\nok"
    assert error_kind(data) == "content-length"


def test_leading_crlf_before_the_start_line_is_skipped() -> None:
    assert parse_response(b"\r\n\r\n" + MINIMAL_RESPONSE).status == 200


def test_a_keepalive_alone_is_reported_as_empty() -> None:
    assert error_kind(b"\r\n\r\n") == "empty"
    assert error_kind(b"") == "empty"


def test_other_sip_versions_are_rejected() -> None:
    assert error_kind(b"SIP/3.0 200 OK\r\n\r\n") == "start-line"
    assert error_kind(b"NOTIFY sip:a@b SIP/1.0\r\n\r\n") == "start-line"


@pytest.mark.parametrize("code", [b"099", b"700", b"20", b"2000", b"abc", b"\xd9\xa200"])
def test_bad_status_codes_are_rejected(code: bytes) -> None:
    assert error_kind(b"SIP/2.0 " + code + b" OK\r\n\r\n") == "start-line"


@pytest.mark.parametrize(
    "line", [b"NOTIFY sip:a@b", b"NOT(IFY sip:a@b SIP/2.0", b"NOTIFY  sip:a@b SIP/2.0"]
)
def test_malformed_request_lines_are_rejected(line: bytes) -> None:
    assert error_kind(line + b"\r\n\r\n") == "start-line"


def test_header_line_without_colon_is_rejected() -> None:
    assert error_kind(b"SIP/2.0 200 OK\r\nCall-ID x\r\n\r\n") == "header"


def test_header_name_with_illegal_characters_is_rejected() -> None:
    assert error_kind(b"SIP/2.0 200 OK\r\nCall ID: x\r\n\r\n") == "header"


def test_message_larger_than_max_size_is_rejected() -> None:
    assert error_kind(notify_bytes(), max_size=100) == "too-large"


def test_message_without_an_empty_line_after_the_headers_is_truncated() -> None:
    assert error_kind(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n") == "truncated"


def test_require_names_the_missing_header() -> None:
    msg = parse_request(notify_bytes())
    require(msg, "Via", "From", "To", "Call-ID", "CSeq")
    with pytest.raises(SipParseError, match="Expires") as info:
        require(msg, "Call-ID", "Expires")
    assert info.value.kind == "missing-header"


def test_to_bytes_uses_crlf_and_exactly_one_correct_content_length() -> None:
    msg = parse_response(b"SIP/2.0 200 OK\nContent-Length: 2\nl: 2\n\nok")
    msg.body = b"longer"
    data = msg.to_bytes()
    assert data == b"SIP/2.0 200 OK\r\nContent-Length: 6\r\n\r\nlonger"
    assert msg.get("Content-Length") == "6"


def test_a_serialised_message_parses_back_equal() -> None:
    msg = parse_request(notify_bytes())
    again = parse_message(msg.to_bytes())
    assert again == msg


def test_bytes_that_are_not_utf8_survive_a_round_trip() -> None:
    data = b"SIP/2.0 200 OK\r\nSubject: caf\xe9\r\n\r\n\xff\xfe"
    msg = parse_response(data)
    assert parse_message(msg.to_bytes()) == msg
    assert (
        msg.to_bytes() == b"SIP/2.0 200 OK\r\nSubject: caf\xe9\r\nContent-Length: 2\r\n\r\n\xff\xfe"
    )


def test_set_replaces_every_value_at_the_first_ones_place() -> None:
    msg = Response(200, "OK", [("Subject", "a"), ("Call-ID", "x"), ("subject", "b")])
    msg.set("SUBJECT", "c")
    assert msg.headers == [("Subject", "c"), ("Call-ID", "x")]
    msg.set("Expires", "10")
    assert msg.headers[-1] == ("Expires", "10")


def test_remove_drops_every_value() -> None:
    msg = Response(200, "OK", [("Subject", "a"), ("Call-ID", "x"), ("s", "b")])
    msg.remove("subject")
    assert msg.headers == [("Call-ID", "x")]


def test_header_values_with_line_breaks_are_refused() -> None:
    msg = Response(200, "OK")
    with pytest.raises(ValueError, match="CR or LF"):
        msg.add("Subject", "a\r\nVia: injected")


def test_content_length_cannot_be_set_by_hand() -> None:
    msg = Request("NOTIFY", "sip:a@b", [("Content-Length", "99")], body=b"abc")
    msg.set("Content-Length", "5")
    assert msg.headers == []
    assert msg.to_bytes().count(b"Content-Length") == 1
    assert msg.get("content-length") == "3"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('a;b="x;y";c', ["a", 'b="x;y"', "c"]),
        ("<sip:p;lr>;q", ["<sip:p;lr>", "q"]),
        ('a;b="x\\";y";c', ["a", 'b="x\\";y"', "c"]),
        (";;", ["", "", ""]),
    ],
)
def test_split_quoted_cuts_only_outside_quotes_and_angle_brackets(
    text: str, parts: list[str]
) -> None:
    assert split_quoted(text, ";") == parts


def test_split_list_gives_stripped_non_empty_entries() -> None:
    value = ' "Doe, J" <sip:a@x;lr> ,, <sip:b@y>, '
    assert split_list(value) == ['"Doe, J" <sip:a@x;lr>', "<sip:b@y>"]
