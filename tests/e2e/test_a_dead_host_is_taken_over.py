"""Two hosts' worth of the service on one machine, sharing one PostgreSQL store:
when one dies, the other adopts its dialogs within the notifiers' patience
(in the dialog, higher CSeqs, its own Contact, no new dialogs) and serves their
last status to its own clients at once; a node cut off from the database stops
refreshing the dialogs it no longer holds."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.helpers import (
    contact_port,
    in_dialog_subscribes,
    initial_subscribes,
    is_open_with,
    is_status,
    record_at,
    wait_each,
)
from tests.e2e.service import ServiceProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

PAIRS = 20
LEASE = 3.0
"""Lease of a partition, seconds: short, so a death is noticed within the test."""


def _store(url: str, node: str, **more: object) -> dict[str, dict[str, object]]:
    return {"store": {"url": url, "node": node, "lease_seconds": LEASE, **more}}


def _cseq(msg) -> int:  # type: ignore[no-untyped-def]
    match = re.match(r"\s*(\d+)", msg.header("CSeq"))
    assert match, msg.header("CSeq")
    return int(match.group(1))


def _pairs(record: str) -> list[tuple[str, str]]:
    return [(record, f"sip:watcher{n}@example.com") for n in range(PAIRS)]


def test_a_killed_host_is_taken_over_in_the_dialog_by_the_other(
    service, clients, hold_uas, postgres
):
    url = postgres.create_database()
    a = service(shards=2, config=_store(url, "host-a"))
    b = service(shards=2, config=_store(url, "host-b", reattach_grace=120))
    uas = hold_uas(calls=PAIRS, expires=60)
    pairs = _pairs(record_at(uas, "carol"))
    on_a = clients(a, name="on-a")
    wait_each(on_a, [on_a.subscribe(*p) for p in pairs], "the first status",
              is_open_with("at lunch"))
    a_dialogs = {m.call_id: _cseq(m) for m in initial_subscribes(uas)}
    wait_for("A's dialogs written", lambda: sum(
        s["store"]["rows_synchronous"] + s["store"]["rows_batched"]
        for s in (a.stats() or {"shards": []})["shards"]
    ) >= PAIRS)

    killed = time.monotonic()
    a.kill()

    # B claims A's partitions once their leases run out and refreshes each
    # dialog in the dialog, above A's CSeqs, with B's own Contact.
    b_ports = {b.shard_port(0), b.shard_port(1)}
    refreshes = wait_for(
        "an in-dialog refresh of each of A's dialogs",
        lambda: found if len(found := {
            c: r for c in a_dialogs for r in in_dialog_subscribes(uas, c)
        }) == PAIRS else None,
        timeout=30,
    )
    print(f"\n{PAIRS} dialogs refreshed by B {time.monotonic() - killed:.1f} s after A died"
          f" (lease {LEASE:g} s)")
    for call_id, refresh in refreshes.items():
        assert _cseq(refresh) > a_dialogs[call_id]
        assert contact_port(refresh) in b_ports
    adopted = sum(s["store"]["adopted"] for s in (b.stats() or {"shards": []})["shards"])
    assert adopted == PAIRS

    # A client of B asking for A's pairs joins the adopted dialogs: no new one.
    on_b = clients(b, name="on-b")
    wait_each(on_b, [on_b.subscribe(*p) for p in pairs], "the adopted status",
              is_status("active"))
    assert set(m.call_id for m in initial_subscribes(uas)) == set(a_dialogs)


def test_a_host_cut_off_from_the_store_stops_refreshing_the_dialogs_it_held(
    service, clients, hold_uas, own_postgres
):
    url = own_postgres.start().create_database()
    svc: ServiceProcess = service(shards=1, config=_store(url, "host-a"))
    uas = hold_uas(calls=4, expires=8)  # refresh due 6 s after the dialog began
    record = record_at(uas, "carol")
    client = clients(svc, name="cut-off")
    sub = client.subscribe(record, "sip:watcher@example.com")
    wait_each(client, [sub], "the first status", is_open_with("at lunch"))
    (first,) = initial_subscribes(uas)

    own_postgres.stop()

    # The lease ends on A's own clock before the refresh is due: the dialog
    # A held is never refreshed by A again. Its client is served by a dialog
    # of A's own, kept in memory only.
    wait_for("a new dialog for the client", lambda: len(initial_subscribes(uas)) == 2,
             timeout=20)
    wait_each(client, [sub], "a status from the new dialog", is_open_with("at lunch"))
    lost = wait_for("the partitions counted lost", lambda: (
        st if (st := svc.stats()) and st["shards"][0]["store"]["partitions_lost"] else None
    ))
    assert lost["shards"][0]["store"]["partitions_held"] == 0
    # The new dialog began after the old one, so once it has been refreshed the
    # old one's refresh time has long gone by: nothing was sent in it.
    new = next(m for m in initial_subscribes(uas) if m.call_id != first.call_id)
    wait_for("the new dialog refreshed", lambda: in_dialog_subscribes(uas, new.call_id),
             timeout=20)
    assert in_dialog_subscribes(uas, first.call_id) == []
