"""Identical (record, subscriber) subscriptions from two clients share one SIP dialog."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import (
    dialogs_for,
    initial_subscribes,
    is_open_with,
    is_status,
    next_event,
    record_at,
    unsubscribed,
    wait_dialogs,
    wait_unsubscribed,
)
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration


def test_two_clients_one_dialog_both_served_until_the_last_one_leaves(service, clients, hold_uas):
    svc = service(shards=2)
    uas = hold_uas(calls=2)
    record = record_at(uas, "bob")
    subscriber = "sip:watcher@example.com"
    first, second = clients(svc, name="first"), clients(svc, name="second")

    a = first.subscribe(record, subscriber)
    next_event(first, "the first NOTIFY's status", is_open_with("at lunch"))
    (dialog,) = wait_dialogs(uas, record, subscriber)

    # The late joiner gets the last status at once: no new SUBSCRIBE, no new NOTIFY.
    b = second.subscribe(record, subscriber)
    joined = next_event(second, "the last status on joining", is_open_with("at lunch"))
    assert joined.id == b
    assert len(dialogs_for(uas, record, subscriber)) == 1
    assert uas.count_sent("NOTIFY") == 1

    (row,) = svc.admin("list")
    assert row["clients"] == 2

    # A new NOTIFY (brought by a refresh) reaches both.
    svc.admin("refresh", id=row["id"])
    for client, sub_id in ((first, a), (second, b)):
        event = next_event(client, "the refreshed status", is_open_with("refreshed"))
        assert event.id == sub_id

    # One leaves: it is told at once, and the dialog stays for the other.
    first.unsubscribe(a)
    next_event(first, "the first client's final status", is_status("terminated", "unsubscribed"))
    wait_for("ctl list showing one client left", lambda: svc.admin("list")[0]["clients"] == 1)
    time.sleep(0.3)
    assert not unsubscribed(uas, dialog.call_id)

    # The last one leaves: now the dialog ends on the wire.
    second.unsubscribe(b)
    next_event(second, "the second client's final status", is_status("terminated", "unsubscribed"))
    wait_unsubscribed(uas, [dialog.call_id])
    assert len(initial_subscribes(uas)) == 1
    wait_for("an empty ctl list", lambda: svc.admin("list") == [])
