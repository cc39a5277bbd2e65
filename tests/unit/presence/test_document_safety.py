"""Every XML document reader refuses hostile bodies the way the PIDF reader does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.presence.dialoginfo import parse_dialog_info
from presence_b2b.presence.reginfo import parse_reginfo
from presence_b2b.presence.rlmi import parse_rlmi
from presence_b2b.presence.watcherinfo import parse_watcherinfo
from presence_b2b.presence.xmlsafe import BodyError

Reader = Callable[..., object]

# (reader, root element, namespace) for every tree-based reader.
READERS = [
    pytest.param(
        parse_dialog_info, "dialog-info", "urn:ietf:params:xml:ns:dialog-info", id="dialog"
    ),
    pytest.param(parse_reginfo, "reginfo", "urn:ietf:params:xml:ns:reginfo", id="reginfo"),
    pytest.param(
        parse_watcherinfo, "watcherinfo", "urn:ietf:params:xml:ns:watcherinfo", id="watcherinfo"
    ),
    pytest.param(parse_rlmi, "list", "urn:ietf:params:xml:ns:rlmi", id="rlmi"),
]


def kind_of(reader: Reader, body: bytes, **limits: int) -> str:
    with pytest.raises(BodyError) as e:
        reader(body, **limits)
    return e.value.kind


# DTDs that would expand entities (billion laughs) or load a file (XXE): both are
# refused at the DOCTYPE, before any declaration in it is read.
DTDS = [
    pytest.param(
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">', "b", id="laughs"
    ),
    pytest.param('<!ENTITY x SYSTEM "file:///etc/passwd">', "x", id="external"),
]


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
@pytest.mark.parametrize(("declarations", "entity"), DTDS)
def test_a_dtd_is_refused_before_anything_in_it_is_read(
    reader: Reader, root: str, ns: str, declarations: str, entity: str
) -> None:
    body = f'<!DOCTYPE {root} [{declarations}]><{root} xmlns="{ns}">&{entity};</{root}>'
    assert kind_of(reader, body.encode()) == "forbidden-dtd"


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
def test_undeclared_entity_is_not_xml(reader: Reader, root: str, ns: str) -> None:
    assert kind_of(reader, f'<{root} xmlns="{ns}">&x;</{root}>'.encode()) == "not-xml"


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
def test_deep_nesting_is_refused_quickly(reader: Reader, root: str, ns: str) -> None:
    body = f'<{root} xmlns="{ns}">'.encode() + b"<x>" * 50_000 + b"</x>" * 50_000
    body += f"</{root}>".encode()
    start = time.perf_counter()
    assert kind_of(reader, body, max_bytes=len(body)) == "too-deep"
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
def test_element_flood_is_refused(reader: Reader, root: str, ns: str) -> None:
    body = f'<{root} xmlns="{ns}">'.encode() + b"<x/>" * 10_000 + f"</{root}>".encode()
    assert kind_of(reader, body) == "too-many-elements"


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
def test_oversize_body_is_refused_before_parsing(reader: Reader, root: str, ns: str) -> None:
    body = f'<{root} xmlns="{ns}"/>'.encode() + b" " * 300_000
    assert kind_of(reader, body) == "too-large"


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
@given(body=st.binary(max_size=1000))
def test_arbitrary_bytes_raise_nothing_but_body_error(
    reader: Reader, root: str, ns: str, body: bytes
) -> None:
    with contextlib.suppress(BodyError):
        reader(body)


TOKENS = st.sampled_from(
    [
        "<{root} xmlns='{ns}'>",
        "</{root}>",
        "<{root} xmlns='{ns}' version='1' state='full' fullState='true' uri='sip:l@x'/>",
        "<dialog id='d'>",
        "</dialog>",
        "<state>confirmed</state>",
        "<registration aor='sip:a@x'>",
        "</registration>",
        "<contact id='c' expires='99999999999999999999999'>",
        "</contact>",
        "<watcher-list resource='r'>",
        "</watcher-list>",
        "<watcher id='w'>sip:w@x</watcher>",
        "<resource uri='sip:r@x'>",
        "</resource>",
        "<instance id='i' state='terminated' reason='x' cid='c@x'/>",
        "<name xml:lang='en'>n</name>",
        "&amp;",
        "&lol;",
        "<!DOCTYPE x>",
        "<![CDATA[<]]>",
        " ",
    ]
)


@pytest.mark.parametrize(("reader", "root", "ns"), READERS)
@given(tokens=st.lists(TOKENS, max_size=30))
def test_near_document_token_soup_raises_nothing_but_body_error(
    reader: Reader, root: str, ns: str, tokens: list[str]
) -> None:
    body = "".join(tokens).format(root=root, ns=ns).encode()
    with contextlib.suppress(BodyError):
        reader(body)
