"""Chaos, short versions (the figures in docs/reliability.md come from the same
tests with -s): the link to the presence server loses datagrams both ways, or
the server goes away and comes back. Every subscription still gets its status;
a second copy of a status only ever follows a failure the client was told of;
every pair reaches the server, with no extra dialog at 5 % loss; a server that
comes back is not stormed: new dialogs are paced by sip.subscribe_rate."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from presence_b2b.presence.status import Failure

from tests.e2e.helpers import (
    describe,
    initial_subscribes,
    is_open_with,
    no_more_events,
    wait_each,
)
from tests.peers.lossy_relay import RelayProcess

pytestmark = pytest.mark.integration

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
    got = wait_each(client, ids, "the status", is_open_with("at lunch"), timeout=60)
    took = time.monotonic() - started
    later = no_more_events(client, quiet=1.0)

    failures = Counter(e.id for e in later if isinstance(e.message, Failure))
    statuses = Counter(e.id for e in later if is_open_with("at lunch")(e))
    # A second "at lunch" only ever follows a failure the client was told of.
    assert all(statuses[i] <= failures[i] for i in statuses), [describe(e) for e in later]
    dialogs = Counter(m.header("From").split(">")[0] for m in initial_subscribes(uas))
    counts = relay.stop()
    print(
        f"\nloss {loss:.0%}: {len(got)}/{PAIRS} statuses in {took:.1f} s; "
        f"{sum(dialogs.values())} dialogs at the server for {PAIRS} pairs; "
        f"relay dropped {counts['dropped']} of {counts['received']}"
    )
    # Every pair reached the server; extra dialogs are new tries after a
    # failure, never two at once for the same pair without one.
    assert len(dialogs) == PAIRS
    if loss <= 0.05:
        assert sum(dialogs.values()) == PAIRS, "5 % loss costs retransmissions, not dialogs"


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
