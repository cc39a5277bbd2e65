"""A subscription that ends for good without the client's unsubscribe (the notifier
rejected it, the service refused it) leaves the supervisor's registry too, so a
shard restart does not bring it back."""

from __future__ import annotations

import os
import signal

import pytest
from presence_b2b.presence.status import Failure

from tests.e2e.helpers import (
    initial_subscribes,
    next_event,
    record_at,
    stored_dialogs,
    wait_dialogs,
)
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration


def _final_error(event) -> bool:
    return isinstance(event.message, Failure) and event.message.retry_in is None


def test_a_subscription_rejected_by_the_notifier_is_not_replayed_after_a_shard_restart(
    service, clients, sipp_uas
):
    svc = service(shards=1)
    # Two calls allowed: a replay after the restart would show up as a second dialog.
    uas = sipp_uas("uas_terminated", calls=2, recv_timeout_ms=60_000, reason="rejected")
    record = record_at(uas, "judy")
    client = clients(svc)
    sub_id = client.subscribe(record, "sip:watcher@example.com")
    event = next_event(client, "the final error", _final_error)
    assert event.id == sub_id
    wait_dialogs(uas, record, "sip:watcher@example.com")
    wait_for("the registry to forget it", lambda: svc.stats()["subscriptions"] == 0)
    # The dialog store deletes an ended dialog at its next write (within ~50 ms,
    # docs/store.md); a kill before that would resume it from the store, which is
    # the store's documented window, not the replay this test is about.
    wait_for("the store to forget it", lambda: stored_dialogs(svc) == [])

    (old_pid,) = svc.shard_pids().values()
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        "the shard back up",
        lambda: (s := svc.stats()) and s["shards"][0]["up"] and s["shards"][0]["pid"] != old_pid,
    )
    assert svc.admin("list") == [], "nothing was replayed into the new shard"
    assert len(initial_subscribes(uas)) == 1
    assert client.client.unknown_ids == 0


def test_a_refused_subscription_is_forgotten_by_the_supervisor(service, clients):
    svc = service(shards=2)
    client = clients(svc)
    # Not an RFC 6665 event type: refused before any SIP is sent.
    sub_id = client.subscribe("sip:kim@127.0.0.1:9", "sip:watcher@example.com", "not a package")
    event = next_event(client, "the refusal", _final_error)
    assert event.id == sub_id
    assert isinstance(event.message, Failure) and event.message.kind == "refused"
    wait_for("the registry to forget it", lambda: svc.stats()["subscriptions"] == 0)
