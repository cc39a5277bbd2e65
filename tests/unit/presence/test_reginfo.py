"""reginfo documents (RFC 3680): where an address of record is registered."""

from __future__ import annotations

import pytest
from presence_b2b.presence.reginfo import RegContact, RegInfo, Registration, parse_reginfo
from presence_b2b.presence.xmlsafe import BodyError

NS = "urn:ietf:params:xml:ns:reginfo"

# The shape of RFC 3680's example: one registration, one contact just registered,
# another that expired.
RFC3680_EXAMPLE = f"""<?xml version="1.0"?>
<reginfo xmlns="{NS}" version="0" state="full">
  <registration aor="sip:user@example.com" id="as9" state="active">
    <contact id="76" state="active" event="registered" duration-registered="7322"
             q="0.8" expires="3600" callid="0a0c" cseq="2">
      <uri>sip:user@pc887.example.com</uri>
      <display-name xml:lang="en">User's PC</display-name>
    </contact>
    <contact id="77" state="terminated" event="expired" duration-registered="3600">
      <uri>sip:user@192.0.2.1</uri>
    </contact>
  </registration>
</reginfo>
""".encode()


def test_rfc3680_example_is_read() -> None:
    assert parse_reginfo(RFC3680_EXAMPLE) == RegInfo(
        state="full",
        version=0,
        registrations=(
            Registration(
                aor="sip:user@example.com",
                id="as9",
                state="active",
                contacts=(
                    RegContact(
                        id="76",
                        state="active",
                        event="registered",
                        uri="sip:user@pc887.example.com",
                        display_name="User's PC",
                        expires=3600,
                        duration_registered=7322,
                        q="0.8",
                        call_id="0a0c",
                        cseq=2,
                    ),
                    RegContact(
                        id="77",
                        state="terminated",
                        event="expired",
                        uri="sip:user@192.0.2.1",
                        duration_registered=3600,
                    ),
                ),
            ),
        ),
    )


def test_a_partial_document_with_no_registration_is_read() -> None:
    body = f'<reginfo xmlns="{NS}" version="5" state="partial"/>'.encode()
    assert parse_reginfo(body) == RegInfo(state="partial", version=5)


def test_unknown_elements_inside_a_contact_are_skipped() -> None:
    body = (
        f'<reginfo xmlns="{NS}" version="1" state="full"><registration aor="sip:a@x" id="r"'
        ' state="init"><contact id="c" state="active" event="created" expires="soon">'
        '<unknown-param name="foo">bar</unknown-param><uri> sip:a@h </uri></contact>'
        "</registration></reginfo>"
    ).encode()
    (reg,) = parse_reginfo(body).registrations
    assert reg.contacts == (RegContact(id="c", state="active", event="created", uri="sip:a@h"),)


def test_another_root_is_not_reginfo() -> None:
    with pytest.raises(BodyError) as e:
        parse_reginfo(b'<reginfo xmlns="urn:other"/>')
    assert e.value.kind == "not-reginfo"
