"""A shard killed with SIGKILL comes back with its subscriptions: set up again
when there is no dialog store, resumed from the store when there is one."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.helpers import (
    contact_port,
    describe,
    is_open_with,
    is_status,
    next_event,
    record_at,
    wait_dialogs,
    wait_each,
    wait_stored,
)
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration


def test_sigkilled_shard_without_a_store_sets_its_subscriptions_up_again_once(
    service, clients, hold_uas
):
    svc = service(shards=2, config={"store": {"url": ""}})
    uas = hold_uas(calls=6)
    record = record_at(uas, "carol")
    victim = svc.pair_on_shard(0, record, "victim")
    bystander = svc.pair_on_shard(1, record, "bystander")
    first, second = clients(svc, name="first"), clients(svc, name="second")
    # Two clients share the dialog on the victim shard; one more dialog on the other.
    a = first.subscribe(record, victim)
    b = second.subscribe(record, victim)
    c = first.subscribe(record, bystander)
    wait_each(first, [a, c], "the first status", is_open_with("at lunch"))
    wait_each(second, [b], "the first status", is_open_with("at lunch"))
    wait_dialogs(uas, record, victim)
    wait_dialogs(uas, record, bystander)
    old_pids = svc.shard_pids()

    os.kill(old_pids[0], signal.SIGKILL)

    def respawned() -> dict | None:
        stats = svc.stats()
        if stats is None:
            return None
        shard0 = stats["shards"][0]
        return stats if shard0["up"] and shard0["pid"] != old_pids[0] else None

    stats = wait_for("shard 0 back with a new pid", respawned)
    assert stats["shards"][0]["restarts"] == 1
    assert stats["shards"][1]["pid"] == old_pids[1], "the other shard is left alone"

    # The victim's clients hear that the dialog is being set up again, then get statuses.
    for client, sub_id in ((first, a), (second, b)):
        skipped: list = []
        next_event(
            client,
            f"#{sub_id} reestablishing",
            lambda e, i=sub_id: e.id == i and is_status("pending", "reestablishing")(e),
            skipped=skipped,
        )
        next_event(
            client,
            f"#{sub_id} open again",
            lambda e, i=sub_id: e.id == i and is_open_with("at lunch")(e),
            skipped=skipped,
        )
        assert all(e.id != sub_id for e in skipped), [describe(e) for e in skipped]

    # A new SUBSCRIBE on the wire, from the respawned shard's socket...
    old, new = wait_dialogs(uas, record, victim, count=2)
    assert new.call_id != old.call_id
    assert contact_port(new) == svc.shard_port(0)
    # ...and still one dialog per pair: the two clients' replays were deduplicated.
    rows = svc.admin("list")
    assert sorted((r["subscriber"], r["clients"]) for r in rows) == sorted(
        [(victim, 2), (bystander, 1)]
    )
    assert len(wait_dialogs(uas, record, bystander)) == 1, "the other shard's dialog stayed"


def test_sigkilled_shard_with_a_store_resumes_its_dialogs_without_a_new_subscribe(
    service, clients, hold_uas
):
    svc = service(shards=2)
    uas = hold_uas(calls=4)
    record = record_at(uas, "carol")
    victim = svc.pair_on_shard(0, record, "victim")
    first, second = clients(svc, name="first"), clients(svc, name="second")
    a = first.subscribe(record, victim)
    b = second.subscribe(record, victim)
    wait_each(first, [a], "the first status", is_open_with("at lunch"))
    wait_each(second, [b], "the first status", is_open_with("at lunch"))
    (stored,) = wait_stored(svc, 1)
    old_pid = svc.shard_pids()[0]

    os.kill(old_pid, signal.SIGKILL)

    wait_for(
        "shard 0 back with a new pid",
        lambda: (st := svc.stats()) and st["shards"][0]["up"] and st["shards"][0]["pid"] != old_pid,
    )
    # The supervisor's replay joins the restored dialog: the clients hear the
    # last status again, and the presence server hears nothing.
    for client, sub_id in ((first, a), (second, b)):
        next_event(
            client, f"#{sub_id} open again",
            lambda e, i=sub_id: e.id == i and is_open_with("at lunch")(e),
        )
    assert [m.call_id for m in wait_dialogs(uas, record, victim)] == [stored.call_id]
    (row,) = svc.admin("list")
    assert row["clients"] == 2
