"""Two shards share the subscriptions by the stable hash, each owning its own dialogs."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import (
    contact_port,
    is_open_with,
    no_more_events,
    record_at,
    status_of,
    wait_dialogs,
    wait_each,
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
        mine = [ids[(client_no, shard)] for shard in (0, 1)]
        got = wait_each(qsa[client_no], mine, "an open status", is_open_with("at lunch"))
        for sub_id, event in got.items():
            shard = mine.index(sub_id)
            assert event.subscriber == pairs[(client_no, shard)]
            status = status_of(event)
            assert status.presentity is not None
            assert status.presentity.entity == record
        assert no_more_events(qsa[client_no]) == [], "and nothing for the other client's ids"

    listing = svc.admin("list")
    by_shard = {row["id"].split(":")[0] for row in listing}
    assert by_shard == {"0", "1"}
    assert len(listing) == 4
