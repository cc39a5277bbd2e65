"""Status.document on the wire: new documents travel, old decoders still read statuses."""

from __future__ import annotations

import msgspec
import pytest
from presence_b2b.ipc.messages import decode_status, encode
from presence_b2b.presence.dialoginfo import Dialog, DialogInfo, Participant
from presence_b2b.presence.document import Note, PresenceTuple, Presentity
from presence_b2b.presence.reginfo import RegContact, RegInfo, Registration
from presence_b2b.presence.resourcelist import ResourceList, ResourceState
from presence_b2b.presence.status import Document, Status, SubscriptionState
from presence_b2b.presence.summary import MessageCounts, MessageSummary
from presence_b2b.presence.watcherinfo import Watcher, WatcherInfo, WatcherList


class StatusBeforeDocuments(msgspec.Struct, tag="status", frozen=True, omit_defaults=True):
    """Status as clients built before ``document`` existed."""

    id: int
    state: SubscriptionState
    reason: str = ""
    presentity: Presentity | None = None
    content_type: str = ""
    body: bytes = b""
    error: str = ""
    merged: int = 0


ACTIVE = SubscriptionState.ACTIVE
ALICE = Presentity("sip:a@x", (PresenceTuple("t", "open"),), (Note("hi", "en"),))
DOCUMENTS: list[Document] = [
    DialogInfo(
        "sip:a@x",
        "full",
        3,
        (Dialog("d", "confirmed", local=Participant("sip:a@x", "A"), duration=4),),
    ),
    RegInfo("full", 0, (Registration("sip:a@x", "r", "active", (RegContact("c", uri="sip:h"),)),)),
    MessageSummary(True, "sip:vm@x", (MessageCounts("voice-message", 1, 2, 0, 1),)),
    WatcherInfo("partial", 9, (WatcherList("sip:a@x", "presence", (Watcher("w", "pending"),)),)),
    ResourceList(
        "sip:list@x",
        2,
        False,
        resources=(
            ResourceState("sip:list@x", "sip:b@x", instance="i", state="active", presentity=ALICE),
            ResourceState("sip:list@x", "sip:c@x", state="terminated", reason="rejected"),
        ),
        needs_refresh=True,
    ),
]


def test_a_presence_status_encodes_exactly_as_before() -> None:
    now = Status(7, ACTIVE, presentity=ALICE, content_type="x", body=b"<p/>", merged=1)
    before = StatusBeforeDocuments(
        7, ACTIVE, presentity=ALICE, content_type="x", body=b"<p/>", merged=1
    )
    assert encode(now) == msgspec.msgpack.encode(before)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: type(d).__name__)
def test_every_document_round_trips_through_the_status_ring_format(document: Document) -> None:
    status = Status(1, ACTIVE, content_type="application/x", body=b"raw", document=document)
    assert decode_status(encode(status)) == status


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: type(d).__name__)
def test_a_decoder_that_predates_documents_still_reads_the_status(document: Document) -> None:
    status = Status(1, ACTIVE, "", None, "application/x", b"raw", "", 2, document)
    old = msgspec.msgpack.decode(encode(status), type=StatusBeforeDocuments)
    assert old == StatusBeforeDocuments(1, ACTIVE, "", None, "application/x", b"raw", "", 2)


def test_the_document_names_its_kind_in_a_type_key() -> None:
    raw = msgspec.msgpack.decode(encode(Status(1, ACTIVE, document=DOCUMENTS[0])))
    assert raw["document"]["type"] == "dialog-info"
    assert [msgspec.msgpack.decode(msgspec.msgpack.encode(d))["type"] for d in DOCUMENTS] == [
        "dialog-info",
        "reginfo",
        "message-summary",
        "watcherinfo",
        "resource-list",
    ]
