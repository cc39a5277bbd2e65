"""Two shards share the subscriptions by the stable hash, each owning its own dialogs."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import (
    contact_port,
    is_open_with,
    next_event,
    record_at,
    status_of,
    wait_dialogs,
)

pytestmark = pytest.mark.integration


def test_each_shard_owns_the_dialogs_hashed_to_it_and_statuses_reach_their_client(
    service, clients, hold_uas
):
    svc = service(shards=2)
    uas = hold_uas(calls=4)
    record = record_at(uas, "alice")
    # Two clients, each with one subscription on each shard.
    pairs = {
        (client_no, shard): svc.pair_on_shard(shard, record, f"w{client_no}s{shard}x")
        for client_no in (0, 1)
        for shard in (0, 1)
    }
    qsa = [clients(svc, name=f"client{n}") for n in (0, 1)]
    ids = {
        (client_no, shard): qsa[client_no].subscribe(record, subscriber)
        for (client_no, shard), subscriber in pairs.items()
    }

    for (_, shard), subscriber in pairs.items():
        # The SUBSCRIBE names the owning shard's socket, so its NOTIFYs go there.
        (dialog,) = wait_dialogs(uas, record, subscriber)
        assert contact_port(dialog) == svc.shard_port(shard)

    for client_no in (0, 1):
        got = {}
        for _ in range(2):
            event = next_event(qsa[client_no], "an open status", is_open_with("at lunch"))
            got[event.id] = event
        mine = {ids[(client_no, shard)] for shard in (0, 1)}
        assert set(got) == mine, "each client gets its own statuses under its own ids"
        for event in got.values():
            assert event.subscriber in {pairs[(client_no, s)] for s in (0, 1)}
            status = status_of(event)
            assert status.presentity is not None
            assert status.presentity.entity == record

    listing = svc.admin("list")
    by_shard = {row["id"].split(":")[0] for row in listing}
    assert by_shard == {"0", "1"}
    assert len(listing) == 4
