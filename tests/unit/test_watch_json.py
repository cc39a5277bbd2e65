"""``watch --json``: the keys a line carries for each kind of status."""

from __future__ import annotations

import json

from presence_b2b.cli.watch import as_json, as_line
from presence_b2b.ipc.client import ClientEvent
from presence_b2b.presence.dialoginfo import Dialog, DialogInfo
from presence_b2b.presence.status import Status, SubscriptionState

RECORD = "sip:alice@example.com"
BASE_KEYS = {
    "kind", "id", "record", "subscriber", "state", "reason", "entity", "basic", "notes",
    "tuples", "content_type", "body", "parse_error", "merged", "error_kind", "code",
    "detail", "retry_in",
}


def line(msg: Status) -> dict[str, object]:
    return as_json(ClientEvent(msg.id, RECORD, "sip:bob@example.com", msg))


def test_a_presence_status_has_exactly_the_base_keys() -> None:
    assert set(line(Status(1, SubscriptionState.ACTIVE))) == BASE_KEYS


def test_another_packages_document_is_printed_under_document() -> None:
    info = DialogInfo("sip:alice@x", dialogs=(Dialog("d1", "confirmed"),))
    out = line(Status(1, SubscriptionState.ACTIVE, document=info))
    assert json.loads(json.dumps(out["document"])) == {
        "type": "dialog-info",
        "entity": "sip:alice@x",
        "dialogs": [{"id": "d1", "state": "confirmed"}],
    }
    assert "list" not in out


def test_a_resource_of_a_list_is_printed_with_list_and_resource() -> None:
    msg = Status(1, SubscriptionState.PENDING, list=RECORD, resource="sip:carol@example.com")
    out = line(msg)
    assert (out["list"], out["resource"], out["state"]) == (
        RECORD, "sip:carol@example.com", "pending"
    )
    assert "sip:carol@example.com pending" in as_line(
        ClientEvent(1, RECORD, "sip:bob@example.com", msg)
    )


def test_the_list_itself_is_printed_with_a_null_resource() -> None:
    out = line(Status(1, SubscriptionState.TERMINATED, "noresource", list=RECORD))
    assert (out["list"], out["resource"]) == (RECORD, None)
