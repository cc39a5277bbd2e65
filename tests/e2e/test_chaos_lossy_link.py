"""Chaos, short versions (the figures in docs/reliability.md come from the same
tests with -s): the link to the presence server loses datagrams both ways, or
the server goes away and comes back. Every subscription still gets its status;
a second copy of a status and a second dialog for a pair only ever follow an
end or a failure the client was told of; every pair reaches the server; a server that
comes back is not stormed: new dialogs are paced by sip.subscribe_rate."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from presence_b2b.presence.status import Failure

from tests.e2e.helpers import (
    describe,
    events_until_each_has,
    initial_subscribes,
    is_open_with,
    is_status,
    no_more_events,
    wait_each,
)
from tests.peers.lossy_relay import RelayProcess

# Heavy loss on a busy machine may take a few transaction timeouts and retries.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PAIRS = 100


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    made: list[RelayProcess] = []
    yield made
    for relay in made:
        relay.stop()


@pytest.mark.parametrize("loss", [0.05, 0.20, 0.50])
def test_every_subscription_gets_its_status_once_through_a_lossy_link(
    service, clients, hold_uas, relays, loss
):
    uas = hold_uas(calls=PAIRS * 5, expires=60)
    relay = RelayProcess(uas.port, drop=loss, seed=int(loss * 100))
    relays.append(relay)
    svc = service(shards=2)
    client = clients(svc, name=f"loss-{loss:g}")
    record = f"sip:carol@127.0.0.1:{relay.port}"
    ids = [client.subscribe(record, f"sip:watcher{n}@example.com") for n in range(PAIRS)]

    started = time.monotonic()
    events = events_until_each_has(client, ids, is_open_with("at lunch"), timeout=240)
    took = time.monotonic() - started
    events += no_more_events(client, quiet=1.0)

    # Told that a dialog failed or ended (SIPp's simple scenario takes a
    # retransmitted initial SUBSCRIBE for a refresh, and the next one for an
    # unsubscribe: its "terminated;reason=timeout" makes the service
    # subscribe again at once, as RFC 6665 asks).
    failures = Counter(
        e.id for e in events
        if isinstance(e.message, Failure) or is_status("terminated")(e)
    )
    statuses = Counter(e.id for e in events if is_open_with("at lunch")(e))
    # A second "at lunch" only ever follows an end or failure the client was told of.
    twice = {i: [describe(e) for e in events if e.id == i] for i in ids
             if statuses[i] > 1 + failures[i]}
    assert not twice, twice
    dialogs = Counter(m.header("From").split(">")[0] for m in initial_subscribes(uas))
    counts = relay.stop()
    print(
        f"\nloss {loss:.0%}: {PAIRS}/{PAIRS} statuses in {took:.1f} s; "
        f"{sum(dialogs.values())} dialogs at the server for {PAIRS} pairs, "
        f"{sum(failures.values())} failures told; "
        f"relay dropped {counts['dropped']} of {counts['received']}"
    )
    # Every pair reached the server, and a pair has another dialog only after
    # its client was told that the one before failed or ended.
    assert len(dialogs) == PAIRS
    for n, sub_id in enumerate(ids):
        assert dialogs[f"<sip:watcher{n}@example.com"] <= 1 + failures[sub_id], sub_id


def test_a_server_that_goes_away_and_comes_back_gets_every_subscription_paced(
    service, clients, hold_uas, relays
):
    rate = 20
    uas = hold_uas(calls=PAIRS * 10, expires=60)
    relay = RelayProcess(uas.port)
    relays.append(relay)
    port = relay.port
    svc = service(shards=2, config={"sip": {"subscribe_rate": rate}})
    client = clients(svc, name="server-gone")
    record = f"sip:carol@127.0.0.1:{port}"
    before = [client.subscribe(record, f"sip:early{n}@example.com") for n in range(10)]
    wait_each(client, before, "the status", is_open_with("at lunch"))

    relay.stop()  # the server is gone: its address answers nothing
    waiting = [client.subscribe(record, f"sip:late{n}@example.com") for n in range(40)]
    wait_each(client, waiting, "a failure while the server is away",
              lambda e: isinstance(e.message, Failure), timeout=30)
    seen_before = {m.call_id for m in initial_subscribes(uas)}

    back = RelayProcess(uas.port, port=port)
    relays.append(back)
    returned = time.monotonic()
    wait_each(client, waiting, "the status once it is back", is_open_with("at lunch"), timeout=30)
    took = time.monotonic() - returned

    new = [m for m in initial_subscribes(uas) if m.call_id not in seen_before]
    per_second = Counter(int(m.time.timestamp()) for m in new)
    print(f"\nserver back: 40 subscriptions active {took:.1f} s later; "
          f"new dialogs per second at the server: {sorted(per_second.values(), reverse=True)}")
    assert max(per_second.values()) <= 2 * rate, "no storm: paced by sip.subscribe_rate"
    assert svc.running()
