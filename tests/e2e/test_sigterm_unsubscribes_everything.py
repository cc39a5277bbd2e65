"""SIGTERM: every dialog is unsubscribed on the wire, then the service exits 0."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import is_status, next_event, record_at, unsubscribed, wait_dialogs

pytestmark = pytest.mark.integration

STOP_MARGIN = 5.0
"""What the supervisor gives its shards on top of wait_for_term_notify before killing them."""


def test_sigterm_sends_expires_0_on_every_dialog_and_exits_0_in_time(
    service, clients, hold_uas, sipp_uas
):
    svc = service(shards=2)
    uas = hold_uas(calls=4)
    # One notifier never sends the terminating NOTIFY: the wait for it is bounded.
    mute = sipp_uas("uas_unsub_no_term_notify", recv_timeout_ms=60_000)
    record = record_at(uas, "erin")
    pairs = [
        (record, svc.pair_on_shard(shard, record, f"w{n}x")) for shard in (0, 1) for n in (0, 1)
    ]
    pairs.append((record_at(mute, "frank"), "sip:watcher@example.com"))
    client = clients(svc)
    for r, s in pairs:
        client.subscribe(r, s)
    for _ in pairs:
        next_event(client, "an active status", is_status("active"))
    dialogs = [wait_dialogs(uas, r, s)[0] for r, s in pairs[:-1]]
    (mute_dialog,) = wait_dialogs(mute, *pairs[-1])

    started = time.monotonic()
    code = svc.stop(timeout=svc.wait_for_term_notify + STOP_MARGIN + 10.0)
    took = time.monotonic() - started

    assert code == 0, svc.stderr()
    for d in dialogs:
        assert unsubscribed(uas, d.call_id), f"no Expires: 0 for {d.header('From')}"
    assert unsubscribed(mute, mute_dialog.call_id)
    # Reported, not asserted: a loaded machine must not fail the test on a figure.
    print(f"stopped in {took:.2f} s (wait_for_term_notify {svc.wait_for_term_notify:g} s)")
    assert "Traceback" not in svc.stderr()
