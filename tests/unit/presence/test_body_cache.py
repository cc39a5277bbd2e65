"""decode_body remembers parsed documents, within its bounds."""

from __future__ import annotations

from presence_b2b.presence import body as body_module
from presence_b2b.presence.body import CACHE_ENTRIES, cache_weight, decode_body

PIDF = "application/pidf+xml"


def doc(entity: str, note: str = "") -> bytes:
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
        f'<tuple id="t"><status><basic>open</basic></status></tuple>{note}</presence>'
    ).encode()


def test_the_same_body_gives_the_same_frozen_presentity() -> None:
    first, err = decode_body(PIDF, doc("sip:a@x"))
    again, err2 = decode_body(PIDF, bytes(doc("sip:a@x")))
    assert err == err2 == ""
    assert first is not None and again is first


def test_errors_are_remembered_too_and_content_type_still_decides() -> None:
    bad = b"<presence><unclosed></presence>"
    assert decode_body(PIDF, bad)[1].startswith("pidf:")
    assert decode_body(PIDF, bad)[1].startswith("pidf:")
    assert decode_body("text/plain", doc("sip:a@x")) == (
        None,
        "unsupported content type text/plain",
    )


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    for i in range(CACHE_ENTRIES + 50):
        decode_body(PIDF, doc(f"sip:u{i}@x"))
    assert len(body_module._cache) == CACHE_ENTRIES
    big_note = "<note>" + "x" * 8000 + "</note>"
    for i in range(400):
        decode_body(PIDF, doc(f"sip:b{i}@x", big_note))
    assert body_module._cache_bytes <= body_module.CACHE_BYTES
    huge = doc("sip:h@x", "<note>" + "y" * 20000 + "</note>")
    assert decode_body(PIDF, huge)[0] is not None
    assert huge not in body_module._cache


def test_least_recently_used_goes_first() -> None:
    keep = doc("sip:keep@x")
    kept, _ = decode_body(PIDF, keep)
    for i in range(CACHE_ENTRIES - 1):
        decode_body(PIDF, doc(f"sip:u{i}@x"))
        decode_body(PIDF, keep)  # used again: stays
    decode_body(PIDF, doc("sip:last@x"))
    assert decode_body(PIDF, keep)[0] is kept


def redeclaring(entity: str) -> bytes:
    """A small body whose parsed form is large: each extension re-declares a long URI."""
    uri = "urn:" + "n" * 500
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:a="{uri}" entity="{entity}">'
        + "<a:x/>" * 20
        + "</presence>"
    ).encode()


def test_an_entry_costs_its_parsed_document_not_only_its_body() -> None:
    body = redeclaring("sip:a@x")
    result = decode_body(PIDF, body)
    assert body_module._cache_bytes == cache_weight(body, *result)
    assert body_module._cache_bytes > 10 * len(body)


def test_the_byte_bound_holds_for_bodies_that_parse_into_more_text() -> None:
    for i in range(200):  # 200 x ~11 kB parsed from 200 x ~0.7 kB of bodies
        decode_body(PIDF, redeclaring(f"sip:u{i}@x"))
    assert body_module._cache_bytes <= body_module.CACHE_BYTES
    assert len(body_module._cache) < 200
