"""dialog-info documents (RFC 4235): which dialogs a user is in, and in what state."""

from __future__ import annotations

import pytest
from presence_b2b.presence.dialoginfo import Dialog, DialogInfo, Participant, parse_dialog_info
from presence_b2b.presence.xmlsafe import BodyError

NS = "urn:ietf:params:xml:ns:dialog-info"

# The shape of RFC 4235's examples: a full document with one confirmed dialog.
RFC4235_FULL = f"""<?xml version="1.0"?>
<dialog-info xmlns="{NS}" version="1" state="full" entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710" local-tag="1928301774"
          remote-tag="456887766" direction="initiator">
    <state>confirmed</state>
    <duration>274</duration>
    <local>
      <identity display="Alice">sip:alice@example.com</identity>
      <target uri="sip:alice@pc33.example.com"/>
    </local>
    <remote>
      <identity display="Bob">sip:bob@example.org</identity>
      <target uri="sip:bobster@phone21.example.org"/>
    </remote>
  </dialog>
</dialog-info>
""".encode()


def test_rfc4235_full_document_is_read() -> None:
    assert parse_dialog_info(RFC4235_FULL) == DialogInfo(
        entity="sip:alice@example.com",
        state="full",
        version=1,
        dialogs=(
            Dialog(
                id="as7d900as8",
                state="confirmed",
                direction="initiator",
                call_id="a84b4c76e66710",
                local_tag="1928301774",
                remote_tag="456887766",
                duration=274,
                local=Participant("sip:alice@example.com", "Alice", "sip:alice@pc33.example.com"),
                remote=Participant("sip:bob@example.org", "Bob", "sip:bobster@phone21.example.org"),
            ),
        ),
    )


def test_a_terminated_dialog_says_why() -> None:
    body = (
        f'<dialog-info xmlns="{NS}" version="2" state="partial" entity="sip:a@x">'
        '<dialog id="d1"><state event="rejected" code="486">terminated</state></dialog>'
        "</dialog-info>"
    ).encode()
    info = parse_dialog_info(body)
    assert info.state == "partial"
    assert info.dialogs == (Dialog(id="d1", state="terminated", event="rejected", code=486),)


def test_an_idle_user_has_no_dialogs() -> None:
    body = f'<dialog-info xmlns="{NS}" version="0" state="full" entity="sip:a@x"/>'.encode()
    assert parse_dialog_info(body) == DialogInfo(entity="sip:a@x", version=0)


def test_prefixed_namespace_reads_the_same() -> None:
    body = RFC4235_FULL.replace(b'xmlns="', b'xmlns:d="')
    body = body.replace(b"<", b"<d:").replace(b"<d:/", b"</d:").replace(b"<d:?", b"<?")
    assert parse_dialog_info(body) == parse_dialog_info(RFC4235_FULL)


def test_sloppy_values_are_kept_or_dropped_not_refused() -> None:
    body = (
        f'<dialog-info xmlns="{NS}" version="x" entity="sip:a@x">'
        '<dialog><state code="abc"> early </state><duration>-1</duration></dialog>'
        '<dialog id="d2"/></dialog-info>'
    ).encode()
    info = parse_dialog_info(body)
    assert info.version is None
    assert info.dialogs == (Dialog(id="", state="early"), Dialog(id="d2"))


def test_elements_of_other_namespaces_are_not_dialogs() -> None:
    body = (
        f'<dialog-info xmlns="{NS}" entity="sip:a@x" xmlns:e="urn:e">'
        '<e:dialog id="no"/><dialog id="yes"/></dialog-info>'
    ).encode()
    assert [d.id for d in parse_dialog_info(body).dialogs] == ["yes"]


def test_another_root_is_not_dialog_info() -> None:
    with pytest.raises(BodyError) as e:
        parse_dialog_info(b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>')
    assert e.value.kind == "not-dialog-info"
