"""decode: every event package's body through one call; presence unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.presence.body import Decoded, decode, decode_body
from presence_b2b.presence.dialoginfo import DialogInfo
from presence_b2b.presence.packages import PackageDocument
from presence_b2b.presence.reginfo import RegInfo
from presence_b2b.presence.summary import MessageCounts, MessageSummary
from presence_b2b.presence.watcherinfo import WatcherInfo

PIDF = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x"/>'
DIALOG = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" entity="sip:a@x" version="0"/>'
REG = b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>'
WINFO = b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full"/>'
MWI = b"Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n"


@pytest.mark.parametrize(
    ("package", "content_type", "body"),
    [
        ("presence", "application/pidf+xml", PIDF),
        ("presence", None, PIDF),
        ("presence", "application/xpidf+xml", PIDF),
        ("presence", "multipart/related;boundary=x", b"--x--"),
        ("presence", "application/pidf+xml", b"<presence"),
        ("presence", None, b"not xml"),
        ("presence", None, b""),
    ],
)
def test_presence_decodes_exactly_as_decode_body(
    package: str, content_type: str | None, body: bytes
) -> None:
    decoded = decode(package, content_type, body)
    assert (decoded.presentity, decoded.error) == decode_body(content_type, body)
    assert decoded.document is None


@pytest.mark.parametrize(
    ("package", "content_type", "body", "document"),
    [
        ("dialog", "application/dialog-info+xml", DIALOG, DialogInfo(entity="sip:a@x", version=0)),
        ("reg", "Application/Reginfo+XML; charset=UTF-8", REG, RegInfo(version=0)),
        ("presence.winfo", "application/watcherinfo+xml", WINFO, WatcherInfo(version=0)),
        (
            "message-summary",
            "application/simple-message-summary",
            MWI,
            MessageSummary(True, None, (MessageCounts("voice-message", 1, 0),)),
        ),
    ],
)
def test_each_package_document_is_read_by_its_content_type(
    package: str, content_type: str, body: bytes, document: PackageDocument
) -> None:
    assert decode(package, content_type, body) == Decoded(document=document)


@pytest.mark.parametrize(
    ("package", "body"),
    [("dialog", DIALOG), ("reg", REG), ("dialog.winfo", WINFO), ("message-summary", MWI)],
)
def test_without_content_type_the_package_names_the_reader(package: str, body: bytes) -> None:
    assert decode(package, None, body).document is not None


def test_a_pidf_body_in_another_package_is_still_a_presentity() -> None:
    assert decode("dialog", "application/pidf+xml", PIDF).presentity is not None


@pytest.mark.parametrize(
    ("package", "content_type"),
    [
        ("dialog", "application/x-vendor+xml"),
        ("conference", "application/conference-info+xml"),
        ("conference", None),
        ("ua-profile", "text/plain"),
    ],
)
def test_other_packages_and_types_travel_raw_without_error(
    package: str, content_type: str | None
) -> None:
    assert decode(package, content_type, b"<anything/>") == Decoded()


def test_a_bad_document_is_reported_with_its_format_and_kind() -> None:
    decoded = decode("dialog", "application/dialog-info+xml", b"<!DOCTYPE x><x/>")
    assert decoded.document is None
    assert decoded.error.startswith("dialog-info: a DOCTYPE")
    assert decoded.error_kind == "forbidden-dtd"
    assert decode("message-summary", None, b"nothing").error_kind == "not-message-summary"


def test_an_oversize_pidf_reports_too_large() -> None:
    uri = "urn:" + "x" * 31_000
    body = (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:a="{uri}">'
        + "<a:x/>" * 3_000
        + "</presence>"
    ).encode()
    decoded = decode("presence", "application/pidf+xml", body)
    assert decoded.presentity is None
    assert decoded.error_kind == "too-large"
    assert decoded.error.startswith("pidf: ")


def test_empty_bodies_are_no_document_in_every_package() -> None:
    assert decode("dialog", "application/dialog-info+xml", b" \r\n") == Decoded()


@given(
    st.sampled_from(["presence", "dialog", "reg", "message-summary", "presence.winfo", "x"]),
    st.sampled_from(
        [
            None,
            "application/pidf+xml",
            "application/dialog-info+xml",
            "application/reginfo+xml",
            "application/simple-message-summary",
            "application/watcherinfo+xml",
            "text/plain",
        ]
    ),
    st.binary(max_size=300),
)
def test_decode_never_raises(package: str, content_type: str | None, body: bytes) -> None:
    decoded = decode(package, content_type, body)
    assert decoded.presentity is None or decoded.document is None
    assert bool(decoded.error) == bool(decoded.error_kind)
