"""Dialogs kept in the store outlive the process: a service killed with SIGKILL
and started again sends no new initial SUBSCRIBE, refreshes every dialog in the
dialog, and gives clients that ask again their last status at once; dialogs
nobody asks for again are unsubscribed after the grace; a resource list comes
back with every resource's status; SIGTERM leaves nothing to resume."""

from __future__ import annotations

import time
import urllib.request

import pytest
from presence_b2b.ipc.client import BlockingQsaClient
from presence_b2b.presence.status import Status

from tests.e2e.helpers import (
    contact_port,
    events_until_each_has,
    in_dialog_subscribes,
    initial_subscribes,
    is_open_with,
    is_status,
    make_refreshes_due,
    next_event,
    record_at,
    stored_dialogs,
    wait_each,
    wait_stored,
    wait_unsubscribed,
)
from tests.e2e.ops_service import Scrape
from tests.e2e.service import wait_for
from tests.peers.ports import LOOPBACK, free_tcp_port

pytestmark = pytest.mark.integration

PAIRS = 200


def _subscribe_all(client, uas) -> list[int]:  # type: ignore[no-untyped-def]
    record = record_at(uas, "carol")
    return [client.subscribe(record, f"sip:watcher{n}@example.com") for n in range(PAIRS)]


def test_a_killed_service_resumes_every_dialog_without_a_new_subscribe(
    service, clients, hold_uas
):
    # RFC 3261's T1: with the tests' fast 0.1 s, a refresh SIPp answers late on
    # a busy machine times out (6.4 s) before the answer comes.
    metrics_port = free_tcp_port()
    svc = service(
        shards=2,
        config={
            "sip": {"t1": 0.5, "t2": 4.0},
            "metrics": {"listen": f"{LOOPBACK}:{metrics_port}"},
        },
    )
    uas = hold_uas(calls=PAIRS, expires=3600)
    first = clients(svc, name="before")
    wait_each(first, _subscribe_all(first, uas), "the first status", is_open_with("at lunch"))
    stored = wait_stored(svc, PAIRS)
    call_ids = {r.call_id for r in stored}
    assert len(call_ids) == PAIRS

    svc.kill()
    first.close()
    # Down long enough for every refresh to fall due (the store's times are
    # wall clock): the restarted service must refresh them all, paced.
    make_refreshes_due(svc)
    svc.start()
    again = clients(svc, name="after")
    asked = time.monotonic()
    ids = _subscribe_all(again, uas)
    events = events_until_each_has(again, ids, is_status("active"))
    took = time.monotonic() - asked
    print(f"\n{PAIRS} statuses back {took * 1000:.0f} ms after the client asked again")

    # The refresh of each dialog goes out in the dialog, from the shard's socket
    # (its status may already have been the one the client joined with)...
    seen = {e.id for e in events if is_open_with("refreshed")(e)}
    events_until_each_has(again, set(ids) - seen, is_open_with("refreshed"))
    for call_id in call_ids:
        (refresh,) = in_dialog_subscribes(uas, call_id)
        assert contact_port(refresh) in (svc.shard_port(0), svc.shard_port(1))
    # ...and no pair got a new dialog.
    assert {m.call_id for m in initial_subscribes(uas)} == call_ids

    # Each restored dialog got back the id its Call-ID names: none is kept by
    # its whole Call-ID (the shards sample their gauges every 0.5 s).
    def scrape() -> Scrape:
        url = f"http://{LOOPBACK}:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            return Scrape(page.read().decode())

    wait_for("every restored dialog counted", lambda: scrape().total("dialogs") == PAIRS)
    time.sleep(1.0)
    assert scrape().total("dialogs_by_call_id") == 0


def test_restored_dialogs_nobody_asks_for_again_are_unsubscribed_after_the_grace(
    service, clients, hold_uas
):
    svc = service(shards=2, config={"store": {"reattach_grace": 1}})
    uas = hold_uas(calls=PAIRS, expires=60)
    client = clients(svc, name="gone")
    wait_each(client, _subscribe_all(client, uas), "the first status", is_open_with("at lunch"))
    call_ids = [r.call_id for r in wait_stored(svc, PAIRS)]

    svc.kill()
    client.close()
    svc.start()

    wait_unsubscribed(uas, call_ids)
    assert len(initial_subscribes(uas)) == PAIRS
    wait_for("an empty store", lambda: not stored_dialogs(svc))
    stats = wait_for("every restored dialog ended", lambda: (
        st if (st := svc.stats()) and all(s["dialogs"] == 0 for s in st["shards"]) else None
    ))
    assert [s["dialogs"] for s in stats["shards"]] == [0, 0]
    assert sum(s["store"]["restored"] for s in stats["shards"]) == PAIRS


def _resource_states(
    client: BlockingQsaClient, sub_id: int, timeout: float
) -> dict[str, tuple[str, str]]:
    """(state, reason) of each of the list's two resources, as first told."""
    states: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    while len(states) < 2:
        event = next_event(
            client,
            "a status of each of the list's resources",
            lambda e: e.id == sub_id and isinstance(e.message, Status) and bool(e.message.resource),
            max(deadline - time.monotonic(), 0.01),
        )
        msg = event.message
        assert isinstance(msg, Status)
        states.setdefault(msg.resource, (msg.state.value, msg.reason))
    return states


def test_a_restored_resource_list_tells_a_client_that_asks_again_every_resource(
    service, clients, hold_uas
):
    svc = service(shards=1)
    uas = hold_uas(calls=1, scenario="uas_list_hold.xml", expires=3600)
    the_list = record_at(uas, "friends")
    expected = {
        "sip:bob@example.com": ("active", ""),
        "sip:carol@example.com": ("pending", ""),
    }
    first = clients(svc, name="before")
    sub = first.subscribe(the_list, "sip:watcher@example.com")
    assert _resource_states(first, sub, timeout=15) == expected
    (row,) = wait_stored(svc, 1)

    svc.kill()
    first.close()
    svc.start()
    again = clients(svc, name="after")
    sub = again.subscribe(the_list, "sip:watcher@example.com")

    # At once, from the store: the list server sends nothing until the refresh.
    assert _resource_states(again, sub, timeout=5) == expected
    assert [m.call_id for m in initial_subscribes(uas)] == [row.call_id]
    assert in_dialog_subscribes(uas, row.call_id) == []


def test_sigterm_unsubscribes_everything_and_leaves_nothing_to_resume(
    service, clients, hold_uas
):
    svc = service(shards=2)
    uas = hold_uas(calls=PAIRS, expires=60)
    client = clients(svc, name="stopping")
    wait_each(client, _subscribe_all(client, uas), "the first status", is_open_with("at lunch"))
    call_ids = [r.call_id for r in wait_stored(svc, PAIRS)]

    assert svc.stop() == 0
    client.close()  # it would subscribe everything again once the service is back
    wait_unsubscribed(uas, call_ids)
    assert stored_dialogs(svc) == []

    stats = svc.start().wait_all_shards_up()
    # A shard takes its stored dialogs back before it reports up: there are none.
    assert [s["dialogs"] for s in stats["shards"]] == [0, 0]
    assert [s["store"]["restored"] for s in stats["shards"]] == [0, 0]
    assert len(initial_subscribes(uas)) == PAIRS, "nothing was set up again"
