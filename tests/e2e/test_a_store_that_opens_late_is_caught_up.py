"""A dialog store that cannot be reached when the service starts (PostgreSQL
coming up after it, as at a boot) is tried again until it answers; then every
dialog the shards hold by then is written, without waking the ones at rest and
without a new SUBSCRIBE, so a restart from then on resumes them."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import initial_subscribes, is_open_with, record_at, wait_each
from tests.e2e.service import ServiceProcess, wait_for
from tests.peers.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

PAIRS = 100


def _resting(svc: ServiceProcess) -> int:
    stats = svc.stats()
    return 0 if not stats else sum(s["resting"] for s in stats["shards"])


def _stored_call_ids(server: PostgresServer) -> set[str]:
    """The Call-IDs in the store's table (none before the service made it)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as db:
        try:
            return {row[0] for row in db.execute("SELECT call_id FROM dialogs")}
        except psycopg.errors.UndefinedTable:
            return set()


def test_a_store_that_comes_up_after_the_service_gets_every_dialog_it_holds(
    service, clients, hold_uas, own_postgres
):
    server = own_postgres
    svc = service(shards=2, config={"store": {"url": server.url(), "node": "host-a"}})
    uas = hold_uas(calls=PAIRS, expires=3600)
    client = clients(svc, name="early")
    record = record_at(uas, "carol")
    ids = [client.subscribe(record, f"sip:watcher{n}@example.com") for n in range(PAIRS)]
    wait_each(client, ids, "the first status", is_open_with("at lunch"))
    # Quiet long enough to rest: the rows must be written from rest, not by waking.
    wait_for("every dialog at rest", lambda: _resting(svc) == PAIRS, timeout=30)
    stats = svc.stats()
    assert stats is not None
    assert [s["store"] for s in stats["shards"]] == [None, None]

    server.start()
    dialogs = {m.call_id for m in initial_subscribes(uas)}
    wait_for(
        "every dialog in the store", lambda: _stored_call_ids(server) == dialogs, timeout=60
    )

    assert len(initial_subscribes(uas)) == PAIRS
    assert _resting(svc) == PAIRS
    stats = svc.stats()
    assert stats is not None
    assert all(s["store"] is not None and s["store"]["restored"] == 0 for s in stats["shards"])
