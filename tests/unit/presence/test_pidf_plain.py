"""The plain PIDF reader: it reads what presence servers send, and whatever it
accepts, expat reads to the very same document; anything else it leaves to expat."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.presence import pidf
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.pidf import PidfError, parse_pidf
from presence_b2b.presence.pidf_plain import read_plain
from presence_b2b.presence.xmlsafe import MAX_DEPTH, MAX_ELEMENTS

from presence_b2b.compiled import loaded_compiled

PIDF = "urn:ietf:params:xml:ns:pidf"

SIPP_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    f'<presence xmlns="{PIDF}" entity="sip:alice@example.com">\r\n'
    '<tuple id="sipp-uas">\r\n'
    "<status><basic>open</basic></status>\r\n"
    "<contact>sip:presence-uas@127.0.0.1:5090</contact>\r\n"
    "</tuple>\r\n"
    "<note>update 7</note>\r\n"
    "</presence>\r\n"
).encode()

# Kamailio repeats the namespace on every element it writes.
KAMAILIO_BODY = (
    "<?xml version='1.0' encoding='UTF-8'?>\n"
    f"<presence xmlns='{PIDF}' entity='sip:bob@example.com'>\n"
    f"  <tuple xmlns='{PIDF}' id='0x1'>\n"
    f"    <status xmlns='{PIDF}'><basic xmlns='{PIDF}'>closed</basic></status>\n"
    f"    <contact xmlns='{PIDF}' priority='0.8'>sip:bob@192.0.2.7</contact>\n"
    f"    <note xmlns='{PIDF}' xml:lang='en'>away</note>\n"
    f"    <timestamp xmlns='{PIDF}'>2026-12-04T10:00:00Z</timestamp>\n"
    "  </tuple>\n"
    "</presence>\n"
).encode()

MINIMAL_BODY = b'<presence entity="sip:c@example.com"/>'

SEEDS = [SIPP_BODY, KAMAILIO_BODY, MINIMAL_BODY]


def expat(body: bytes) -> Presentity | str:
    """What the expat reader makes of a body: the document, or its error kind."""
    try:
        return parse_pidf(body, plain=False)
    except PidfError as e:
        return e.kind


def plain(body: bytes) -> Presentity | None:
    return read_plain(body, MAX_DEPTH, MAX_ELEMENTS)


@pytest.mark.parametrize("body", SEEDS, ids=["sipp", "kamailio", "minimal"])
def test_what_presence_servers_send_is_read_without_expat(body: bytes) -> None:
    read = plain(body)
    assert read is not None
    assert read == expat(body)


def test_every_field_is_read_as_expat_reads_it() -> None:
    assert plain(KAMAILIO_BODY) == Presentity(
        "sip:bob@example.com",
        (
            PresenceTuple(
                "0x1",
                "closed",
                "sip:bob@192.0.2.7",
                0.8,
                "2026-12-04T10:00:00Z",
                (Note("away", "en"),),
            ),
        ),
    )


def test_parse_pidf_reads_plain_and_other_documents_alike() -> None:
    extended = SIPP_BODY.replace(b"</presence>", b'<x xmlns="urn:x">1</x></presence>')
    assert parse_pidf(SIPP_BODY) == parse_pidf(SIPP_BODY, plain=False)
    assert parse_pidf(extended) == parse_pidf(extended, plain=False)
    assert parse_pidf(extended).extensions == ('<x xmlns="urn:x">1</x>',)


NOT_PLAIN = {
    "an entity reference": SIPP_BODY.replace(b"update 7", b"a &amp; b"),
    "a character reference": SIPP_BODY.replace(b"update 7", b"&#65;"),
    "a comment": SIPP_BODY.replace(b"<tuple", b"<!-- c --><tuple"),
    "a DOCTYPE": b"<!DOCTYPE presence>" + MINIMAL_BODY,
    "CDATA": SIPP_BODY.replace(b"update 7", b"<![CDATA[x]]>"),
    "a processing instruction": SIPP_BODY.replace(b"<tuple", b"<?pi x?><tuple"),
    "an extension element": SIPP_BODY.replace(b"<note>", b'<x xmlns="urn:x"/><note>'),
    "a prefixed element": (
        f'<p:presence xmlns:p="{PIDF}" entity="e"><p:tuple id="t"/></p:presence>'.encode()
    ),
    "a foreign default namespace": MINIMAL_BODY.replace(b"<presence", b'<presence xmlns="urn:x"'),
    "a prefix declaration": MINIMAL_BODY.replace(b"<presence", b'<presence xmlns:x="urn:x"'),
    "a prefixed attribute": MINIMAL_BODY.replace(b"<presence", b'<presence x:a="1"'),
    "a repeated attribute": MINIMAL_BODY.replace(b"<presence", b'<presence entity="d"'),
    "a second basic": SIPP_BODY.replace(b"</status>", b"<basic>closed</basic></status>"),
    "a second contact": SIPP_BODY.replace(b"</tuple>", b"<contact>x</contact></tuple>"),
    "markup inside a note": SIPP_BODY.replace(b"update 7", b"a<b>b</b>"),
    "a note inside a status": SIPP_BODY.replace(b"</status>", b"<note>n</note></status>"),
    "a CR inside a value": SIPP_BODY.replace(b"update 7", b"a\rb"),
    "a tab inside an attribute": SIPP_BODY.replace(b'id="sipp-uas"', b'id="a\tb"'),
    "a byte-order mark": b"\xef\xbb\xbf" + SIPP_BODY,
    "bytes that are not UTF-8": SIPP_BODY.replace(b"update 7", b"\xff"),
    "a control character": SIPP_BODY.replace(b"update 7", b"\x01"),
    "a non-character": SIPP_BODY.replace(b"update 7", "\ufffe".encode()),
    "another encoding": SIPP_BODY.replace(b"UTF-8", b"ISO-8859-1"),
    "XML 1.1": SIPP_BODY.replace(b'version="1.0"', b'version="1.1"'),
    "text after the root": SIPP_BODY + b"x",
    "a second root": SIPP_BODY + MINIMAL_BODY,
    "an unclosed element": SIPP_BODY.replace(b"</presence>", b""),
    "a mismatched end tag": SIPP_BODY.replace(b"</note>", b"</nope>"),
    "a space before a name": SIPP_BODY.replace(b"<tuple", b"< tuple"),
    "an unquoted attribute": MINIMAL_BODY.replace(b'"sip:c@example.com"', b"e"),
    "a '>' inside an attribute": MINIMAL_BODY.replace(b"sip:c", b"a>b"),
    "another root": b'<presencex entity="e"/>',
}


@pytest.mark.parametrize("body", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_anything_outside_the_plain_grammar_is_left_to_expat(body: bytes) -> None:
    assert plain(body) is None


@pytest.mark.parametrize("body", NOT_PLAIN.values(), ids=NOT_PLAIN.keys())
def test_a_document_left_to_expat_reads_as_before(body: bytes) -> None:
    try:
        read: Presentity | str = parse_pidf(body)
    except PidfError as e:
        read = e.kind
    assert read == expat(body)


def test_limits_are_left_to_expat_to_report() -> None:
    assert read_plain(SIPP_BODY, MAX_DEPTH, 5) is None
    assert read_plain(SIPP_BODY, 3, MAX_ELEMENTS) is None
    with pytest.raises(PidfError) as refused:
        parse_pidf(SIPP_BODY, max_elements=5)
    assert refused.value.kind == "too-many-elements"
    assert read_plain(SIPP_BODY, 4, 6) is not None


def test_a_repeated_status_and_notes_are_plain() -> None:
    body = SIPP_BODY.replace(b"</tuple>", b"<status/><note>a</note><note>b</note></tuple>")
    read = plain(body)
    assert read is not None and read == expat(body)
    assert [n.text for n in read.tuples[0].notes] == ["a", "b"]


def test_empty_text_elements_read_as_absent() -> None:
    body = (
        f'<presence xmlns="{PIDF}" entity=""><tuple id="t"><status><basic/></status>'
        "<contact /><note/><timestamp></timestamp></tuple><note>  </note></presence>"
    ).encode()
    read = plain(body)
    assert read == Presentity("", (PresenceTuple("t"),))
    assert read == expat(body)


# --- the two readers agree on everything the plain one accepts ------------------------

plain_char = st.characters(
    min_codepoint=0x20, max_codepoint=0xFFFD, exclude_characters="&<>\"'\ufeff\ufffe"
).filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF)
plain_text = st.text(plain_char, max_size=20)
trimmed = plain_text.map(str.strip).filter(bool)
notes = st.lists(st.builds(Note, text=trimmed, lang=st.none() | plain_text), max_size=2)


DECLARED = ["", '<?xml version="1.0"?>', "<?xml version='1.0' encoding='utf-8'?>"]


@st.composite
def plain_documents(draw: st.DrawFn) -> tuple[bytes, Presentity]:
    """A plain document in one of the shapes servers write, and what it says."""
    ws = draw(st.sampled_from(["", "\n", "\r\n  ", " \t"]))
    repeat = draw(st.booleans())
    quote = draw(st.sampled_from(['"', "'"]))
    ns = f" xmlns={quote}{PIDF}{quote}" if repeat else ""

    def attr(name: str, value: str) -> str:
        return f" {name}={quote}{value}{quote}"

    def note(n: Note) -> str:
        lang = "" if n.lang is None else attr("xml:lang", n.lang)
        return f"<note{ns}{lang}>{n.text}</note>{ws}"

    entity = draw(plain_text)
    parts = [
        draw(st.sampled_from(DECLARED)),
        ws,
        f"<presence xmlns={quote}{PIDF}{quote}{attr('entity', entity)}>{ws}",
    ]
    tuples = []
    for _ in range(draw(st.integers(0, 3))):
        tid = draw(plain_text)
        basic = draw(st.sampled_from([None, "open", "closed", "Open", "other"]))
        contact = draw(st.none() | trimmed)
        priority = draw(st.none() | st.sampled_from(["0.5", "1", "2", "x", " 0.25 "]))
        timestamp = draw(st.none() | trimmed)
        tnotes = draw(notes)
        parts.append(f"<tuple{ns}{attr('id', tid)}>{ws}")
        if basic is not None:
            parts.append(f"<status{ns}>{ws}<basic{ns}>{ws}{basic}{ws}</basic>{ws}</status >{ws}")
        if contact is not None:
            prio = "" if priority is None else attr("priority", priority)
            parts.append(f"<contact{ns}{prio}>{contact}</contact>{ws}")
        parts.extend(note(n) for n in tnotes)
        if timestamp is not None:
            parts.append(f"<timestamp{ns}>{timestamp}</timestamp>{ws}")
        parts.append(f"</tuple>{ws}")
        qvalue = None
        if priority is not None and contact is not None:
            try:
                qvalue = float(priority)
            except ValueError:
                qvalue = None
            if qvalue is not None and not 0.0 <= qvalue <= 1.0:
                qvalue = None
        read_basic = (
            None if basic is None else {"open": "open", "closed": "closed"}.get(basic.lower())
        )
        tuples.append(
            PresenceTuple(tid, read_basic, contact, qvalue, timestamp, tuple(tnotes))  # type: ignore[arg-type]
        )
    top = draw(notes)
    parts.extend(note(n) for n in top)
    parts.append("</presence>")
    return "".join(parts).encode(), Presentity(entity, tuple(tuples), tuple(top))


@settings(max_examples=300)
@given(plain_documents())
def test_generated_plain_documents_are_read_without_expat_to_what_they_say(
    document: tuple[bytes, Presentity],
) -> None:
    body, says = document
    assert plain(body) == says
    assert expat(body) == says


MUTATIONS = [
    b"<",
    b">",
    b"/",
    b"</",
    b"/>",
    b'"',
    b"'",
    b"=",
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"&",
    b"]]>",
    b":",
    b"x",
    b"\x00",
    b"\x0b",
    b"\xc3\xa9",
    b"\xff",
    b"\xef\xbb\xbf",
    b"<!--",
    b"-->",
    b"<?",
    b"?>",
    b"xmlns",
    b' xmlns="urn:x"',
    b' xmlns:p="urn:x"',
    b" xml:lang='de'",
    b"<tuple>",
    b"</tuple>",
    b"<status>",
    b"<basic>",
    b"</basic>",
    b"<note>",
    b"</note>",
    b"<contact>",
    b"<timestamp>",
    b"<presence>",
    b"</presence>",
    b"<p:note>",
]


def mutate(rng: random.Random, body: bytes) -> bytes:
    """One to three random edits: insert a token, delete a run, or duplicate one."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(body) + 1)
        edit = rng.randrange(3)
        if edit == 0:
            body = body[:at] + rng.choice(MUTATIONS) + body[at:]
        elif edit == 1:
            body = body[:at] + body[at + rng.randint(1, 8) :]
        else:
            end = min(len(body), at + rng.randint(1, 40))
            body = body[:end] + body[at:end] + body[end:]
    return body


def test_mutated_documents_the_plain_reader_accepts_read_the_same_with_expat() -> None:
    rng = random.Random(20261204)
    accepted = 0
    for i in range(30_000):
        body = mutate(rng, SEEDS[i % len(SEEDS)])
        read = plain(body)
        if read is not None:
            accepted += 1
            assert read == expat(body), body
    # The edits must leave some documents plain, or this test would compare nothing.
    assert accepted > 1_000


insertions = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(MUTATIONS)), max_size=4)


@settings(max_examples=1000)
@given(st.sampled_from(SEEDS), insertions)
def test_token_insertions_the_plain_reader_accepts_read_the_same_with_expat(
    seed: bytes, insertions: list[tuple[int, bytes]]
) -> None:
    body = seed
    for at, token in insertions:
        body = body[:at] + token + body[at:]
    read = plain(body)
    if read is not None:
        assert read == expat(body)


DECLARATIONS = {
    '<?xml version="1.0"?>': True,
    '<?xml version = "1.0" ?>': True,
    "<?xml\tversion='1.0'\r\n?>": True,
    '<?xml version="1.0" encoding="utf-8" standalone=\'yes\'?>': True,
    "<?xml version='1.0'encoding='UTF-8'?>": False,
    '<?xml version="1.0" standalone="yes" encoding="UTF-8"?>': False,
    ' <?xml version="1.0"?>': False,
}


@pytest.mark.parametrize(("declaration", "is_plain"), DECLARATIONS.items())
def test_only_well_formed_utf8_declarations_are_plain(declaration: str, is_plain: bool) -> None:
    body = (declaration + '<presence entity="e"/>').encode()
    assert (plain(body) is not None) is is_plain
    if is_plain:
        assert plain(body) == expat(body)


def test_the_plain_reader_goes_first_exactly_when_it_is_compiled() -> None:
    assert pidf._PLAIN_FIRST is loaded_compiled("presence_b2b.presence.pidf_plain")
