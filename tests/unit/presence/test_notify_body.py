"""decode_body: which NOTIFY bodies become a Presentity, and what the error says otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.presence import body as body_module
from presence_b2b.presence.body import decode_body, media_type
from presence_b2b.presence.document import PresenceTuple, Presentity

from presence_b2b.compiled import is_compiled

PIDF_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@127.0.0.1">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>\n'
)
ALICE_OPEN = Presentity(
    entity="sip:alice@127.0.0.1", tuples=(PresenceTuple(id="t1", basic="open"),)
)

RLMI_BODY = (
    b"--50UBfW7LSCVLtggUPe5z\r\nContent-Type: application/rlmi+xml;charset=UTF-8\r\n\r\n"
    b'<?xml version="1.0"?><list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:l@h" version="1"'
    b' fullState="true"/>\r\n--50UBfW7LSCVLtggUPe5z--\r\n'
)

XPIDF_BODY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE presence PUBLIC "-//IETF//DTD RFCxxxx XPIDF 1.0//EN"'
    b' "xpidf.dtd">\n<presence><presentity uri="sip:alice@h;method=SUBSCRIBE"/>'
    b'<atom id="1"><address uri="sip:alice@h;user=ip" priority="0.8"><status status="open"/>'
    b"</address></atom></presence>\n"
)


def test_empty_body_gives_no_presentity_and_no_error() -> None:
    # Kamailio's NOTIFY for a presentity that never published: no body, no Content-Type.
    assert decode_body(None, b"") == (None, "")
    assert decode_body("application/pidf+xml", b"") == (None, "")


def test_whitespace_only_body_counts_as_empty() -> None:
    assert decode_body("application/pidf+xml", b"\r\n") == (None, "")


def test_pidf_body_is_parsed() -> None:
    assert decode_body("application/pidf+xml", PIDF_BODY) == (ALICE_OPEN, "")


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/PIDF+XML",
        "application/pidf+xml;charset=UTF-8",
        'application/pidf+xml ; charset="utf-8"',
        "  application/pidf+xml",
    ],
)
def test_content_type_is_case_insensitive_and_parameters_are_ignored(content_type: str) -> None:
    assert decode_body(content_type, PIDF_BODY) == (ALICE_OPEN, "")


def test_cpim_pidf_content_type_is_parsed() -> None:
    body = PIDF_BODY.replace(b"ns:pidf", b"ns:cpim-pidf")
    assert decode_body("application/cpim-pidf+xml", body) == (ALICE_OPEN, "")


def test_pidf_error_is_reported_with_a_pidf_prefix() -> None:
    presentity, error = decode_body("application/pidf+xml", b"<!DOCTYPE x><presence/>")
    assert presentity is None
    assert error == "pidf: a DOCTYPE is not allowed in a NOTIFY body"


def test_truncated_pidf_is_reported_not_dropped() -> None:
    presentity, error = decode_body("application/pidf+xml", PIDF_BODY[:60])
    assert presentity is None
    assert error.startswith("pidf: not well-formed XML")


def test_body_without_content_type_is_tried_as_pidf_when_it_looks_like_xml() -> None:
    assert decode_body(None, PIDF_BODY) == (ALICE_OPEN, "")
    assert decode_body("", b"\xef\xbb\xbf" + PIDF_BODY) == (ALICE_OPEN, "")
    without_declaration = PIDF_BODY.split(b"\n", 1)[1]
    assert decode_body(None, b"\r\n " + without_declaration) == (ALICE_OPEN, "")


def test_body_without_content_type_that_is_not_xml_is_an_error() -> None:
    assert decode_body(None, b"open") == (None, "body without a content type, and it is not XML")


@pytest.mark.parametrize(
    ("content_type", "body", "shown"),
    [
        ("application/xpidf+xml", XPIDF_BODY, "application/xpidf+xml"),
        (
            'multipart/related;type="application/rlmi+xml";boundary=50UBfW7LSCVLtggUPe5z',
            RLMI_BODY,
            "multipart/related",
        ),
        ("text/plain", b"online", "text/plain"),
        ("Application/XML", PIDF_BODY, "application/xml"),
    ],
)
def test_other_content_types_are_unsupported(content_type: str, body: bytes, shown: str) -> None:
    assert decode_body(content_type, body) == (None, f"unsupported content type {shown}")


def test_media_type_drops_parameters_and_case() -> None:
    assert media_type("Application/PIDF+xml; charset=utf-8") == "application/pidf+xml"
    assert media_type(None) == media_type("") == ""


@pytest.mark.skipif(
    is_compiled(),
    reason="compiled, body.py calls parse_pidf directly and no patch reaches it; "
    "the same guard is tested in the pure run",
)
def test_a_parser_bug_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(body: bytes) -> Presentity:
        raise KeyError("oops")

    monkeypatch.setattr(body_module, "parse_pidf", broken)
    assert decode_body("application/pidf+xml", PIDF_BODY) == (
        None,
        "pidf: unexpected failure (KeyError)",
    )


@given(
    st.one_of(
        st.none(), st.text(max_size=40), st.sampled_from(sorted(body_module.PIDF_CONTENT_TYPES))
    ),
    st.binary(max_size=400),
)
def test_decode_body_never_raises(content_type: str | None, body: bytes) -> None:
    presentity, error = decode_body(content_type, body)
    assert presentity is None or isinstance(presentity, Presentity)
    assert isinstance(error, str)
    assert (presentity is None) or error == ""
