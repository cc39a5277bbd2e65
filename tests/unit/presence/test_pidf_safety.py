"""Hostile or broken bodies: refused with PidfError, quickly, resolving nothing."""

from __future__ import annotations

import time

import pytest
from presence_b2b.presence.pidf import PidfError, parse_pidf

PIDF = "urn:ietf:params:xml:ns:pidf"

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE presence [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + f']>\n<presence xmlns="{PIDF}" entity="sip:a@b"><note>&lol9;</note></presence>'.encode()
)

# One 50 kB entity referenced 5 000 times: 250 MB of text if it were expanded.
QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><presence xmlns="urn:ietf:params:xml:ns:pidf"><note>'
    + b"&a;" * 5_000
    + b"</note></presence>"
)

EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf"><note>&xxe;</note></presence>'
)

EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE presence SYSTEM "http://127.0.0.1:9/pidf.dtd">'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>'
)

PARAMETER_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x">%p;]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>'
)


def kind_of(body: bytes, **limits: int) -> str:
    with pytest.raises(PidfError) as e:
        parse_pidf(body, **limits)
    return e.value.kind


def nested(depth: int) -> bytes:
    """A presence root with an extension chain so that the deepest element is at `depth`."""
    inner = depth - 1
    return f'<presence xmlns="{PIDF}">'.encode() + b"<x>" * inner + b"</x>" * inner + b"</presence>"


def test_doctype_is_refused() -> None:
    body = f'<!DOCTYPE presence><presence xmlns="{PIDF}"/>'.encode()
    assert kind_of(body) == "forbidden-dtd"


def test_billion_laughs_is_refused_quickly() -> None:
    start = time.perf_counter()
    assert kind_of(BILLION_LAUGHS) == "forbidden-dtd"
    assert time.perf_counter() - start < 0.05


def test_quadratic_blowup_is_refused_quickly() -> None:
    start = time.perf_counter()
    assert kind_of(QUADRATIC_BLOWUP, max_bytes=len(QUADRATIC_BLOWUP)) == "forbidden-dtd"
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("body", [EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY])
def test_external_entities_and_dtds_are_refused_before_anything_is_loaded(body: bytes) -> None:
    assert kind_of(body) == "forbidden-dtd"


def test_undeclared_entity_reference_is_not_xml() -> None:
    assert kind_of(f'<presence xmlns="{PIDF}"><note>&lol;</note></presence>'.encode()) == "not-xml"


def test_body_over_max_bytes_is_refused_before_parsing() -> None:
    body = f'<presence xmlns="{PIDF}"/>'.encode() + b" " * 300_000
    start = time.perf_counter()
    assert kind_of(body) == "too-large"
    assert time.perf_counter() - start < 0.001


def test_huge_attribute_is_refused_by_the_size_limit() -> None:
    body = f'<presence xmlns="{PIDF}" entity="'.encode() + b"a" * 1_000_000 + b'"/>'
    assert kind_of(body) == "too-large"


def test_size_limit_is_configurable() -> None:
    body = f'<presence xmlns="{PIDF}"/>'.encode()
    assert kind_of(body, max_bytes=len(body) - 1) == "too-large"
    assert parse_pidf(body, max_bytes=len(body)).entity == ""


def test_nesting_up_to_max_depth_is_accepted() -> None:
    assert len(parse_pidf(nested(32)).extensions) == 1


def test_deep_nesting_is_refused_quickly() -> None:
    assert kind_of(nested(33)) == "too-deep"
    body = nested(50_000)
    start = time.perf_counter()
    assert kind_of(body, max_bytes=len(body)) == "too-deep"
    assert time.perf_counter() - start < 0.05


def test_too_many_elements_are_refused() -> None:
    body = f'<presence xmlns="{PIDF}">'.encode() + b"<x/>" * 10_000 + b"</presence>"
    assert kind_of(body) == "too-many-elements"
    assert kind_of(body, max_elements=100) == "too-many-elements"
    assert len(parse_pidf(body, max_elements=10_001).extensions) == 10_000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"sip:alice@example.com is online",
        b"<presence",
        f'<presence xmlns="{PIDF}"><tuple></presence>'.encode(),
        f'<presence xmlns="{PIDF}"/><presence xmlns="{PIDF}"/>'.encode(),
        b'<?xml version="1.0" encoding="KOI8-X"?><presence/>',
        b'<presence xmlns:p="urn:a b"/>',
        b"\xff\xfe\x00\x00garbage",
    ],
)
def test_malformed_bodies_are_not_xml(body: bytes) -> None:
    assert kind_of(body) == "not-xml"


def test_pidf_error_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_pidf(b"<!DOCTYPE presence><presence/>")


def test_predefined_and_character_references_are_still_read() -> None:
    body = f'<presence xmlns="{PIDF}" entity="sip:a&amp;b@h&#46;com"/>'.encode()
    assert parse_pidf(body).entity == "sip:a&b@h.com"


def namespace_blowup(uri_chars: int, count: int) -> bytes:
    """One long namespace URI declared once on the root, used by `count` extensions:
    each extension must re-declare it to stand alone."""
    uri = "urn:" + "x" * uri_chars
    return (
        f'<presence xmlns="{PIDF}" xmlns:a="{uri}">' + "<a:x/>" * count + "</presence>"
    ).encode()


def test_namespace_blowup_in_extensions_is_refused_quickly() -> None:
    # A 49 kB body that would have become 93 MB of extension text.
    body = namespace_blowup(31_000, 3_000)
    start = time.perf_counter()
    assert kind_of(body) == "too-large"
    assert time.perf_counter() - start < 0.05


def test_extension_output_is_bounded_relative_to_the_body() -> None:
    body = namespace_blowup(1_000, 200)  # 200 kB of output from 2 kB
    assert kind_of(body) == "too-large"


def test_extension_output_has_an_absolute_bound() -> None:
    body = namespace_blowup(100, 100)
    assert len(parse_pidf(body).extensions) == 100
    assert kind_of(body, max_extension_chars=5_000) == "too-large"


def test_many_small_extensions_repeating_a_namespace_are_still_read() -> None:
    # What RPID documents do: each extension re-declares the namespaces it uses.
    assert len(parse_pidf(namespace_blowup(40, 500)).extensions) == 500
