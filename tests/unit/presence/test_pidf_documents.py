"""PIDF documents as real presence servers and clients send them."""

from __future__ import annotations

from xml.dom import minidom

import pytest
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.pidf import PidfError, parse_pidf

# What Kamailio 5.6 (presence_xml, offline_nbody) notifies after alice unpublished:
# the last published tuple rebuilt with basic "closed", no note, and an xmlns
# repeated on every element because each node is copied with its namespace.
KAMAILIO_AFTER_UNPUBLISH = b"""<?xml version="1.0"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@127.0.0.1">
  <tuple xmlns="urn:ietf:params:xml:ns:pidf" id="0x7f3b2c1d4e50">
    <status xmlns="urn:ietf:params:xml:ns:pidf">
      <basic xmlns="urn:ietf:params:xml:ns:pidf">closed</basic>
    </status>
  </tuple>
</presence>
"""

# RFC 3863 section 3.4 (the "someone@example.com" example), as published.
RFC3863_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:im="urn:ietf:params:xml:ns:pidf:im"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
      <im:im>busy</im:im>
      <myex:location>home</myex:location>
    </status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2001-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>
  <note>I'll be in Tokyo next week</note>
</presence>
"""

# RFC 4480 (RPID) style: a person with activities and mood next to the tuple.
RPID_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:someone@example.com</contact>
    <timestamp>2005-05-30T22:00:29Z</timestamp>
  </tuple>
  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
    </rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood>
  </dm:person>
  <dm:device id="pc122"><dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID></dm:device>
</presence>
"""

PREFIXED = """<?xml version="1.0" encoding="UTF-8"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.org">
  <p:tuple id="a1">
    <p:status><p:basic>open</p:basic></p:status>
    <p:contact priority="0.5">sip:bob@192.0.2.4</p:contact>
    <p:note xml:lang="de">Im Büro</p:note>
  </p:tuple>
</p:presence>
""".encode()

PIDF = "urn:ietf:params:xml:ns:pidf"


def doc(inner: str, entity: str = "sip:a@example.com", root_attrs: str = "") -> bytes:
    return (f'<presence xmlns="{PIDF}" entity="{entity}"{root_attrs}>{inner}</presence>').encode()


def root_of(xml: str) -> minidom.Element:
    """The fragment's element, parsed on its own: it must stand alone."""
    root = minidom.parseString(xml).documentElement
    assert root is not None
    return root


def one_tuple(inner: str) -> PresenceTuple:
    (t,) = parse_pidf(doc(f'<tuple id="t">{inner}</tuple>')).tuples
    return t


def test_kamailio_document_with_repeated_namespace_declarations_parses() -> None:
    assert parse_pidf(KAMAILIO_AFTER_UNPUBLISH) == Presentity(
        entity="sip:alice@127.0.0.1",
        tuples=(PresenceTuple(id="0x7f3b2c1d4e50", basic="closed"),),
    )


def test_rfc3863_example_gives_tuples_contacts_priorities_timestamps_and_notes() -> None:
    p = parse_pidf(RFC3863_EXAMPLE)
    assert p.entity == "pres:someone@example.com"
    first, second = p.tuples
    assert (first.id, first.basic, first.contact, first.priority, first.timestamp) == (
        "bs35r9",
        "open",
        "im:someone@mobilecarrier.net",
        0.8,
        "2001-10-27T16:49:29Z",
    )
    assert first.notes == (
        Note("Don't Disturb Please!", "en"),
        Note("Ne derangez pas, s'il vous plait", "fr"),
    )
    assert (second.id, second.basic, second.contact, second.priority) == (
        "eg92n8",
        "open",
        "mailto:someone@example.com",
        1.0,
    )
    assert p.notes == (Note("I'll be in Tokyo next week"),)
    assert p.basic == "open"


def test_status_extensions_are_kept_on_the_tuple_with_their_namespaces() -> None:
    first = parse_pidf(RFC3863_EXAMPLE).tuples[0]
    assert first.extensions == (
        '<im:im xmlns:im="urn:ietf:params:xml:ns:pidf:im">busy</im:im>',
        '<myex:location xmlns:myex="http://id.example.com/presence/">home</myex:location>',
    )


def test_rpid_person_element_is_kept_as_standalone_xml() -> None:
    p = parse_pidf(RPID_EXAMPLE)
    person, device = p.extensions
    root = root_of(person)
    assert (root.namespaceURI, root.localName, root.getAttribute("id")) == (
        "urn:ietf:params:xml:ns:pidf:data-model",
        "person",
        "p1",
    )
    activities = root.getElementsByTagNameNS("urn:ietf:params:xml:ns:pidf:rpid", "activities")
    assert activities.length == 1
    assert activities[0].getAttribute("until") == "2005-05-30T17:00:00+05:00"
    away = activities[0].getElementsByTagNameNS("urn:ietf:params:xml:ns:pidf:rpid", "away")
    assert away.length == 1
    assert root_of(device).localName == "device"


def test_rpid_document_still_gives_the_tuple() -> None:
    (t,) = parse_pidf(RPID_EXAMPLE).tuples
    assert (t.id, t.basic, t.contact, t.timestamp) == (
        "bs35r9",
        "open",
        "sip:someone@example.com",
        "2005-05-30T22:00:29Z",
    )


def test_prefixed_document_parses_like_the_default_namespace_one() -> None:
    assert parse_pidf(PREFIXED) == Presentity(
        entity="sip:bob@example.org",
        tuples=(
            PresenceTuple(
                id="a1",
                basic="open",
                contact="sip:bob@192.0.2.4",
                priority=0.5,
                notes=(Note("Im Büro", "de"),),
            ),
        ),
    )


def test_entity_attribute_may_be_empty() -> None:
    assert parse_pidf(doc("", entity="")).entity == ""


def test_missing_entity_attribute_reads_as_empty() -> None:
    assert parse_pidf(f'<presence xmlns="{PIDF}"/>'.encode()).entity == ""


def test_cpim_pidf_namespace_is_accepted() -> None:
    body = (
        b'<presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" entity="pres:a@example.com">'
        b'<tuple id="x"><status><basic>open</basic></status></tuple></presence>'
    )
    p = parse_pidf(body)
    assert (p.entity, p.basic) == ("pres:a@example.com", "open")


def test_root_without_namespace_is_accepted() -> None:
    body = (
        b'<presence entity="sip:a@b">'
        b'<tuple id="x"><status><basic>closed</basic></status></tuple></presence>'
    )
    assert parse_pidf(body).tuples == (PresenceTuple(id="x", basic="closed"),)


def test_presence_root_in_another_namespace_is_not_pidf() -> None:
    with pytest.raises(PidfError) as e:
        parse_pidf(b'<presence xmlns="urn:example:other" entity="sip:a@b"/>')
    assert e.value.kind == "not-pidf"
    assert "urn:example:other" in str(e.value)


def test_namespace_less_xpidf_reads_as_pidf_without_tuples() -> None:
    # The price of accepting a root without namespace; decode_body only gets
    # here for xpidf when the NOTIFY has no Content-Type.
    body = b'<?xml version="1.0"?><presence><presentity uri="sip:a@b;method=SUBSCRIBE"/></presence>'
    p = parse_pidf(body)
    assert (p.tuples, p.extensions) == ((), ('<presentity uri="sip:a@b;method=SUBSCRIBE"/>',))


def test_root_other_than_presence_is_not_pidf() -> None:
    with pytest.raises(PidfError) as e:
        parse_pidf(b'<?xml version="1.0"?><reginfo xmlns="urn:ietf:params:xml:ns:reginfo"/>')
    assert e.value.kind == "not-pidf"


def test_pidf_names_in_a_foreign_namespace_are_extensions_not_tuples() -> None:
    p = parse_pidf(doc('<x:tuple xmlns:x="urn:example:x" id="t"/>'))
    assert p.tuples == ()
    assert p.extensions == ('<x:tuple xmlns:x="urn:example:x" id="t"/>',)


def test_basic_is_case_insensitive_and_trimmed() -> None:
    assert one_tuple("<status><basic>\n  OPEN \t</basic></status>").basic == "open"
    assert one_tuple("<status><basic>Closed</basic></status>").basic == "closed"


@pytest.mark.parametrize("value", ["busy", "", "   ", "opened", "1"])
def test_unknown_basic_value_reads_as_none(value: str) -> None:
    assert one_tuple(f"<status><basic>{value}</basic></status>").basic is None


def test_tuple_without_status_is_kept_with_basic_none() -> None:
    p = parse_pidf(doc('<tuple id="a"><contact>sip:a@h</contact></tuple><note>n</note>'))
    assert p.tuples == (PresenceTuple(id="a", contact="sip:a@h"),)
    assert p.notes == (Note("n"),)


def test_status_without_basic_gives_basic_none() -> None:
    assert one_tuple("<status/>").basic is None


def test_tuple_without_id_gets_an_empty_id() -> None:
    (t,) = parse_pidf(doc("<tuple><status><basic>open</basic></status></tuple>")).tuples
    assert (t.id, t.basic) == ("", "open")


@pytest.mark.parametrize("raw", ["0", "0.5", "1", "1.000", " 0.25 "])
def test_priority_in_zero_to_one_is_read(raw: str) -> None:
    assert one_tuple(f'<contact priority="{raw}">sip:a@h</contact>').priority == float(raw)


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "high", "", "nan", "inf"])
def test_priority_outside_zero_to_one_or_unreadable_is_dropped(raw: str) -> None:
    t = one_tuple(f'<contact priority="{raw}">sip:a@h</contact>')
    assert (t.contact, t.priority) == ("sip:a@h", None)


def test_contact_is_trimmed_and_an_empty_one_is_none() -> None:
    assert one_tuple("<contact>\n   sip:a@h  \n</contact>").contact == "sip:a@h"
    assert one_tuple("<contact>  </contact>").contact is None


def test_first_contact_wins_when_a_tuple_repeats_it() -> None:
    t = one_tuple(
        '<contact priority="0.1">sip:a@h</contact><contact priority="0.9">sip:b@h</contact>'
    )
    assert (t.contact, t.priority) == ("sip:a@h", 0.1)


def test_note_language_comes_from_xml_lang() -> None:
    p = parse_pidf(doc('<note xml:lang="en-GB">Out</note><note>Plain</note>'))
    assert p.notes == (Note("Out", "en-GB"), Note("Plain"))


def test_whitespace_only_note_is_ignored() -> None:
    assert parse_pidf(doc("<note>  \n\t </note><note/>")).notes == ()


def test_note_text_is_trimmed_but_keeps_inner_spacing() -> None:
    assert parse_pidf(doc("<note>\n  back   at 3\n</note>")).notes == (Note("back   at 3"),)


def test_markup_inside_a_note_contributes_only_its_text() -> None:
    assert parse_pidf(doc("<note>in a <b>meeting</b> now</note>")).notes == (
        Note("in a meeting now"),
    )


def test_entities_and_cdata_in_text_are_decoded() -> None:
    body = doc("<note>Tom &amp; Jerry &#233;t&#xE9; <![CDATA[<soon>]]></note>")
    assert parse_pidf(body).notes == (Note("Tom & Jerry été <soon>"),)


def test_top_level_extensions_keep_document_order_around_tuples_and_notes() -> None:
    p = parse_pidf(
        doc(
            '<e:a xmlns:e="urn:e"/><tuple id="t"/><e:b xmlns:e="urn:e"/><note>n</note>'
            '<e:c xmlns:e="urn:e"/>'
        )
    )
    assert p.extensions == (
        '<e:a xmlns:e="urn:e"/>',
        '<e:b xmlns:e="urn:e"/>',
        '<e:c xmlns:e="urn:e"/>',
    )


def test_tuple_extensions_come_in_document_order_with_status_ones() -> None:
    t = one_tuple(
        '<e:first xmlns:e="urn:e"/><status><basic>open</basic><e:in-status xmlns:e="urn:e"/>'
        '</status><e:last xmlns:e="urn:e"/>'
    )
    assert t.extensions == (
        '<e:first xmlns:e="urn:e"/>',
        '<e:in-status xmlns:e="urn:e"/>',
        '<e:last xmlns:e="urn:e"/>',
    )


def test_extension_declares_namespaces_inherited_from_the_document() -> None:
    p = parse_pidf(doc("<e:x><e:y/></e:x>", root_attrs=' xmlns:e="urn:e"'))
    assert p.extensions == ('<e:x xmlns:e="urn:e"><e:y/></e:x>',)


def test_unknown_element_in_the_pidf_namespace_declares_it_as_default() -> None:
    (ext,) = parse_pidf(doc("<device><id>d1</id></device>")).extensions
    assert ext == f'<device xmlns="{PIDF}"><id>d1</id></device>'


def test_unqualified_child_of_a_default_namespace_extension_undeclares_it() -> None:
    (ext,) = parse_pidf(doc('<x xmlns="urn:x"><y xmlns=""/></x>')).extensions
    assert ext == '<x xmlns="urn:x"><y xmlns=""/></x>'
    child = root_of(ext).firstChild
    assert isinstance(child, minidom.Element)
    assert child.namespaceURI is None


def test_prefix_rebound_inside_an_extension_is_redeclared() -> None:
    (ext,) = parse_pidf(
        doc('<e:x xmlns:e="urn:one"><e:y xmlns:e="urn:two"/><e:z/></e:x>')
    ).extensions
    assert ext == '<e:x xmlns:e="urn:one"><e:y xmlns:e="urn:two"/><e:z/></e:x>'


def test_qualified_attribute_in_an_extension_declares_its_prefix() -> None:
    (ext,) = parse_pidf(
        doc('<e:x a:b="1" xml:lang="en"/>', root_attrs=' xmlns:e="urn:e" xmlns:a="urn:a"')
    ).extensions
    dom = root_of(ext)
    assert dom.getAttributeNS("urn:a", "b") == "1"
    assert dom.getAttributeNS("http://www.w3.org/XML/1998/namespace", "lang") == "en"
    assert "xmlns:xml" not in ext


def test_extension_text_and_attributes_are_escaped() -> None:
    (ext,) = parse_pidf(
        doc(
            '<e:x xmlns:e="urn:e" v="a &amp; &lt;b&gt; &quot;c&quot;&#10;d">'
            "1 &lt; 2 &amp;&amp; 3 &gt; 2</e:x>"
        )
    ).extensions
    dom = root_of(ext)
    assert dom.getAttribute("v") == 'a & <b> "c"\nd'
    assert isinstance(dom.firstChild, minidom.Text)
    assert dom.firstChild.data == "1 < 2 && 3 > 2"


def test_utf16_document_is_read() -> None:
    body = f'<?xml version="1.0" encoding="UTF-16"?><presence xmlns="{PIDF}" entity="sip:zoë@x"/>'
    assert parse_pidf(body.encode("utf-16")).entity == "sip:zoë@x"


def test_comments_and_processing_instructions_are_ignored() -> None:
    p = parse_pidf(
        doc(
            '<!-- c --><?pi x?><tuple id="t"><!-- c --><status><basic>open</basic></status></tuple>'
        )
    )
    assert p.tuples == (PresenceTuple(id="t", basic="open"),)
