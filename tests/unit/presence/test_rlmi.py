"""RLMI documents (RFC 4662): the list, its version and state, resources and instances."""

from __future__ import annotations

import pytest
from presence_b2b.presence.document import Note
from presence_b2b.presence.rlmi import RlmiInstance, RlmiList, RlmiResource, parse_rlmi
from presence_b2b.presence.xmlsafe import BodyError

NS = "urn:ietf:params:xml:ns:rlmi"

# The shape of RFC 4662's first example: a full-state list of four resources.
RFC4662_RLMI = f"""<?xml version="1.0" encoding="UTF-8"?>
<list xmlns="{NS}" uri="sip:adam-friends@pres.example.com" version="1" fullState="true">
  <name xml:lang="en">Buddy List at COM</name>
  <name xml:lang="de">Liste der Freunde an COM</name>
  <resource uri="sip:bob@example.com">
    <name>Bob Smith</name>
    <instance id="juwigmtboe" state="active" cid="bUZBsM@pres.example.com"/>
  </resource>
  <resource uri="sip:dave@example.com">
    <name>Dave Jones</name>
    <instance id="hqzsuxtfyq" state="active" cid="ZvSvkz@pres.example.com"/>
  </resource>
  <resource uri="sip:ed@example.net">
    <name>Ed at NET</name>
  </resource>
  <resource uri="sip:adam-friends@example.org">
    <name xml:lang="en">My Friends at ORG</name>
    <instance id="cmpqweitlp" state="terminated" reason="rejected"/>
  </resource>
</list>
""".encode()


def test_rfc4662_full_state_list_is_read() -> None:
    assert parse_rlmi(RFC4662_RLMI) == RlmiList(
        uri="sip:adam-friends@pres.example.com",
        version=1,
        full_state=True,
        names=(Note("Buddy List at COM", "en"), Note("Liste der Freunde an COM", "de")),
        resources=(
            RlmiResource(
                "sip:bob@example.com",
                (Note("Bob Smith"),),
                (RlmiInstance("juwigmtboe", "active", cid="bUZBsM@pres.example.com"),),
            ),
            RlmiResource(
                "sip:dave@example.com",
                (Note("Dave Jones"),),
                (RlmiInstance("hqzsuxtfyq", "active", cid="ZvSvkz@pres.example.com"),),
            ),
            RlmiResource("sip:ed@example.net", (Note("Ed at NET"),)),
            RlmiResource(
                "sip:adam-friends@example.org",
                (Note("My Friends at ORG", "en"),),
                (RlmiInstance("cmpqweitlp", "terminated", reason="rejected"),),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("c@x", "c@x"),
        ("&lt;c@x&gt;", "c@x"),
        ("cid:c@x", "c@x"),
        ("cid:a%25b@x", "a%b@x"),
        (" ", None),
    ],
)
def test_cid_is_kept_in_the_form_parts_are_keyed_by(written: str, read: str | None) -> None:
    body = (
        f'<list xmlns="{NS}" uri="sip:l@x" version="0" fullState="false">'
        f'<resource uri="sip:r@x"><instance id="i" state="active" cid="{written}"/></resource>'
        "</list>"
    ).encode()
    assert parse_rlmi(body).resources[0].instances[0].cid == read


@pytest.mark.parametrize(
    "attrs",
    [
        'version="1"',
        'fullState="true"',
        'version="-1" fullState="1"',
        'version="1" fullState="yes"',
    ],
)
def test_a_list_without_readable_version_and_full_state_is_refused(attrs: str) -> None:
    with pytest.raises(BodyError) as e:
        parse_rlmi(f'<list xmlns="{NS}" uri="sip:l@x" {attrs}/>'.encode())
    assert e.value.kind == "not-rlmi"


def test_a_list_of_another_namespace_is_not_rlmi() -> None:
    with pytest.raises(BodyError) as e:
        parse_rlmi(b'<list xmlns="urn:ietf:params:xml:ns:resource-lists" version="1"/>')
    assert e.value.kind == "not-rlmi"
