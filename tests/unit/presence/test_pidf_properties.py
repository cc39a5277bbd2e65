"""Properties: only PidfError escapes, documents round-trip, extensions stand alone."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from xml.dom import minidom

from hypothesis import given, settings
from hypothesis import strategies as st
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.pidf import PidfError, parse_pidf

PIDF = "urn:ietf:params:xml:ns:pidf"
XML_WS = " \t\n\r"

# --- a small PIDF writer for the tests -------------------------------------------------


def esc_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def esc_attr(s: str) -> str:
    return esc_text(s).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")


def write_pidf(p: Presentity, style: str) -> bytes:
    """PIDF for `p`: "default" namespace, "prefixed" (p:), or "kamailio" (xmlns repeated)."""
    pre = "p:" if style == "prefixed" else ""
    rep = f' xmlns="{PIDF}"' if style == "kamailio" else ""

    def note(n: Note) -> str:
        lang = "" if n.lang is None else f' xml:lang="{esc_attr(n.lang)}"'
        return f"<{pre}note{rep}{lang}>{esc_text(n.text)}</{pre}note>"

    out = []
    decl = f'xmlns:p="{PIDF}"' if style == "prefixed" else f'xmlns="{PIDF}"'
    out.append(f'<?xml version="1.0" encoding="UTF-8"?>\n<{pre}presence {decl}')
    out.append(f' entity="{esc_attr(p.entity)}">\n')
    for t in p.tuples:
        out.append(f'  <{pre}tuple{rep} id="{esc_attr(t.id)}">')
        if t.basic is not None:
            out.append(f"<{pre}status{rep}><{pre}basic{rep}>{t.basic}</{pre}basic></{pre}status>")
        if t.contact is not None or t.priority is not None:
            prio = "" if t.priority is None else f' priority="{t.priority!r}"'
            out.append(f"<{pre}contact{rep}{prio}>{esc_text(t.contact or '')}</{pre}contact>")
        out.extend(note(n) for n in t.notes)
        if t.timestamp is not None:
            out.append(f"<{pre}timestamp{rep}>{esc_text(t.timestamp)}</{pre}timestamp>")
        out.append(f"</{pre}tuple>\n")
    out.extend(note(n) for n in p.notes)
    out.append(f"</{pre}presence>\n")
    return "".join(out).encode()


# --- strategies ------------------------------------------------------------------------

xml_char = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    st.sampled_from("\t\n\r"),
)
xml_text = st.text(xml_char, max_size=30)
trimmed = xml_text.map(lambda s: s.strip(XML_WS)).filter(bool)

notes = st.lists(st.builds(Note, text=trimmed, lang=st.none() | xml_text), max_size=3).map(tuple)
tuples = st.builds(
    PresenceTuple,
    id=xml_text,
    basic=st.sampled_from([None, "open", "closed"]),
    contact=st.none() | trimmed,
    priority=st.none() | st.floats(min_value=0.0, max_value=1.0),
    timestamp=st.none() | trimmed,
    notes=notes,
)
presentities = st.builds(
    Presentity,
    entity=xml_text,
    tuples=st.lists(tuples, max_size=4).map(tuple),
    notes=notes,
)


@settings(max_examples=300)
@given(presentities, st.sampled_from(["default", "prefixed", "kamailio"]))
def test_generated_presentity_round_trips_through_pidf(p: Presentity, style: str) -> None:
    assert parse_pidf(write_pidf(p, style)) == p


# --- arbitrary and near-PIDF input ------------------------------------------------------


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_nothing_but_pidf_error(body: bytes) -> None:
    with contextlib.suppress(PidfError):
        parse_pidf(body)


TOKENS = [
    b"<presence",
    b' xmlns="urn:ietf:params:xml:ns:pidf"',
    b' xmlns:p="urn:ietf:params:xml:ns:pidf"',
    b' xmlns=""',
    b' entity="sip:a@b"',
    b">",
    b"/>",
    b"</presence>",
    b'<tuple id="t">',
    b"</tuple>",
    b"<p:tuple>",
    b"</p:tuple>",
    b"<status>",
    b"</status>",
    b"<basic>",
    b"</basic>",
    b"open",
    b'<contact priority="0.5">',
    b"</contact>",
    b'<note xml:lang="en">',
    b"</note>",
    b"<x:y xmlns:x='urn:x'>",
    b"</x:y>",
    b"&amp;",
    b"&lol;",
    b"&#0;",
    b"<!DOCTYPE p>",
    b'<!ENTITY a "b">',
    b"<![CDATA[<]]>",
    b"<!-- c -->",
    b"<?pi x?>",
    b" ",
    b"\xff",
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join))
def test_near_pidf_token_soup_raises_nothing_but_pidf_error(body: bytes) -> None:
    with contextlib.suppress(PidfError):
        parse_pidf(body)


# --- extensions -------------------------------------------------------------------------

NAMESPACES = [PIDF, "urn:a", "urn:b", ""]


@dataclass
class El:
    uri: str
    prefix: str  # "" for the default namespace
    local: str
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)  # (uri, local) -> value
    children: list[El | str] = field(default_factory=list)


def elements(depth: int) -> st.SearchStrategy[El]:
    children: st.SearchStrategy[list[El | str]]
    if depth == 0:
        children = st.lists(xml_text, max_size=2)
    else:
        children = st.lists(st.one_of(xml_text, elements(depth - 1)), max_size=3)
    return st.builds(
        lambda uri, prefix, local, attrs, kids: El(
            uri, "" if uri == "" else prefix, local, attrs, kids
        ),
        st.sampled_from(NAMESPACES),
        st.sampled_from(["", "a", "b"]),
        st.sampled_from(["x", "y", "z"]),
        st.dictionaries(
            st.tuples(st.sampled_from(["", "urn:attr"]), st.sampled_from(["k", "v"])),
            xml_text,
            max_size=3,
        ),
        children,
    )


def write_element(e: El, scope: dict[str, str]) -> str:
    """Declares a binding only when the scope (starting from the document root's) lacks it."""
    decls = {}
    if scope.get(e.prefix) != e.uri:
        decls[e.prefix] = e.uri
    inner = {**scope, **decls}
    qname = f"{e.prefix}:{e.local}" if e.prefix else e.local
    out = [f"<{qname}"]
    for p, u in decls.items():
        out.append(f' xmlns:{p}="{u}"' if p else f' xmlns="{u}"')
    for (uri, local), value in e.attrs.items():
        out.append(f' {"at:" if uri else ""}{local}="{esc_attr(value)}"')
    out.append(">")
    for c in e.children:
        out.append(esc_text(c) if isinstance(c, str) else write_element(c, inner))
    out.append(f"</{qname}>")
    return "".join(out)


def shape_of_el(e: El) -> tuple[object, ...]:
    kids: list[object] = []
    for c in e.children:
        if isinstance(c, str):
            if not c:
                continue
            if kids and isinstance(kids[-1], str):
                kids[-1] += c
                continue
            kids.append(c)
        else:
            kids.append(shape_of_el(c))
    attrs = sorted(((u, k), v) for (u, k), v in e.attrs.items())
    return (e.uri, e.local, tuple(attrs), tuple(kids))


def shape_of_dom(node: minidom.Element) -> tuple[object, ...]:
    kids: list[object] = []
    for c in node.childNodes:
        if c.nodeType == c.TEXT_NODE:
            if kids and isinstance(kids[-1], str):
                kids[-1] += c.data
            else:
                kids.append(c.data)
        elif isinstance(c, minidom.Element):
            kids.append(shape_of_dom(c))
    attrs = sorted(
        ((a.namespaceURI or "", a.localName), a.value)
        for a in node.attributes.values()
        if a.namespaceURI != "http://www.w3.org/2000/xmlns/"
    )
    return (node.namespaceURI or "", node.localName, tuple(attrs), tuple(kids))


ROOT_SCOPE = {"": PIDF, "a": "urn:a", "b": "urn:b", "at": "urn:attr"}


@settings(max_examples=300)
@given(st.lists(elements(3), min_size=1, max_size=3))
def test_extension_xml_reparses_standalone_with_the_same_structure(exts: list[El]) -> None:
    body = (
        f'<presence xmlns="{PIDF}" xmlns:a="urn:a" xmlns:b="urn:b" xmlns:at="urn:attr">'
        + "".join(write_element(e, ROOT_SCOPE) for e in exts)
        + "</presence>"
    ).encode()
    parsed = parse_pidf(body, max_depth=64)
    assert len(parsed.extensions) == len(exts)
    for text, e in zip(parsed.extensions, exts, strict=True):
        root = minidom.parseString(text).documentElement
        assert root is not None
        assert shape_of_dom(root) == shape_of_el(e)
