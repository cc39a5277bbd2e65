"""``presence-b2b ctl``: list, show, refresh and kill real subscriptions."""

from __future__ import annotations

import json

import pytest
from presence_b2b.presence.status import Failure

from presence_b2b import compiled
from tests.e2e.helpers import (
    in_dialog_subscribes,
    is_open_with,
    next_event,
    record_at,
    wait_dialogs,
    wait_unsubscribed,
)
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def live(service, clients, hold_uas):
    """A service with two live subscriptions, one on each shard."""
    svc = service(shards=2)
    uas = hold_uas(calls=2)
    record = record_at(uas, "henry")
    subscribers = [svc.pair_on_shard(shard, record, "op") for shard in (0, 1)]
    client = clients(svc, name="ops-test")
    ids = [client.subscribe(record, s) for s in subscribers]
    for _ in ids:
        next_event(client, "an open status", is_open_with("at lunch"))
    dialogs = [wait_dialogs(uas, record, s)[0] for s in subscribers]
    return svc, uas, client, record, subscribers, ids, dialogs


def test_ctl_list_shows_every_subscription_as_json_and_as_text(live):
    svc, _, _, record, subscribers, _, _ = live
    out = svc.ctl("--json", "list")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sorted(r["subscriber"] for r in rows) == sorted(subscribers)
    for row in rows:
        assert row["record"] == record
        assert row["state"] == "confirmed"
        assert row["clients"] == 1
        assert row["package"] == "presence"
        shard = int(row["id"].split(":")[0])
        assert row["subscriber"] == subscribers[shard]

    text = svc.ctl("list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2
    for row in rows:
        (line,) = [ln for ln in lines if row["subscriber"] in ln]
        assert row["id"] in line and record in line and "clients=1" in line
        assert " presence " in line

    filtered = json.loads(svc.ctl("--json", "list", "--subscriber", subscribers[1]).stdout)
    assert [r["subscriber"] for r in filtered] == [subscribers[1]]


def test_ctl_show_gives_the_dialog_its_clients_and_the_last_status(live):
    svc, _, client, record, subscribers, ids, dialogs = live
    row = json.loads(svc.ctl("--json", "list", "--subscriber", subscribers[0]).stdout)[0]
    out = svc.ctl("--json", "show", row["id"])
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["id"] == row["id"]
    assert shown["record"] == record and shown["subscriber"] == subscribers[0]
    assert shown["clients"] == [[client.client.client_id, ids[0]]]
    assert shown["last"]["state"] == "active"
    assert shown["engine"]["dialog"]["call_id"] == dialogs[0].call_id

    text = svc.ctl("show", row["id"])
    assert text.returncode == 0 and dialogs[0].call_id in text.stdout

    missing = svc.ctl("show", "0:999999")
    assert missing.returncode == 1 and "no subscription" in missing.stderr
    malformed = svc.ctl("show", "nonsense")
    assert malformed.returncode == 1 and "shard:number" in malformed.stderr


def test_ctl_refresh_sends_an_in_dialog_subscribe(live):
    svc, uas, client, _, subscribers, ids, dialogs = live
    row = json.loads(svc.ctl("--json", "list", "--subscriber", subscribers[1]).stdout)[0]
    out = svc.ctl("refresh", row["id"])
    assert out.returncode == 0, out.stderr

    refreshes = wait_for(
        "the refresh at SIPp", lambda: in_dialog_subscribes(uas, dialogs[1].call_id), 15.0
    )
    assert refreshes[0].header("Expires") not in ("", "0")
    event = next_event(client, "the refreshed status", is_open_with("refreshed"))
    assert event.id == ids[1]
    assert in_dialog_subscribes(uas, dialogs[0].call_id) == [], "only that one was refreshed"


def test_ctl_kill_ends_the_dialog_on_the_wire_and_tells_the_client_finally(live):
    svc, uas, client, _, subscribers, ids, dialogs = live
    row = json.loads(svc.ctl("--json", "list", "--subscriber", subscribers[0]).stdout)[0]
    out = svc.ctl("--json", "kill", row["id"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["clients"] == [[client.client.client_id, ids[0]]]

    event = next_event(client, "the final error", lambda e: isinstance(e.message, Failure))
    assert event.id == ids[0]
    assert isinstance(event.message, Failure)
    assert event.message.retry_in is None, "a killed subscription is over for good"
    wait_unsubscribed(uas, [dialogs[0].call_id])
    assert ids[0] not in client.client.subscriptions

    remaining = wait_for(
        "ctl list without the killed one",
        lambda: rows if len(rows := json.loads(svc.ctl("--json", "list").stdout)) == 1 else None,
    )
    assert remaining[0]["subscriber"] == subscribers[1]
    stats = json.loads(svc.ctl("--json", "stats").stdout)
    assert stats["subscriptions"] == 1, "the supervisor forgot the killed subscription"


def test_ctl_stats_shows_each_shards_store_and_what_it_wrote(live):
    svc, *_ = live
    def written() -> dict | None:
        stats = json.loads(svc.ctl("--json", "stats").stdout)
        return stats if all(s["store"]["rows_batched"] for s in stats["shards"]) else None

    stats = wait_for("both dialogs written", written)
    for shard in stats["shards"]:
        store = shard["store"]
        assert store["backend"] == "sqlite"
        assert store["partitions_held"] == 1024, "SQLite: every partition, for good"
        assert store["restored"] == 0 and store["refused"] == 0
        assert "dialogs.db" not in json.dumps(store), "the URL is never shown"

    # Each shard's share of the default sip.subscribe_rate (1000/s), not cut:
    # nothing here is congested.
    assert [s["subscribe_pace"] for s in stats["shards"]] == [500.0, 500.0]
    text = svc.ctl("stats").stdout
    assert "pace 500.0/s" in text
    assert text.count("store sqlite node ") == 2
    assert "partitions held 1024" in text


def test_ctl_stats_and_version_say_whether_the_running_code_is_compiled(live):
    svc, *_ = live
    # The service runs from this checkout with this environment: compiled exactly
    # when the test process is (in the compiled run, the conftest made sure it is).
    expected = compiled.is_compiled()
    stats = json.loads(svc.ctl("--json", "stats").stdout)
    assert stats["compiled"] is expected
    assert [s["compiled"] for s in stats["shards"]] == [expected, expected]
    assert ("compiled" if expected else "pure Python") in svc.ctl("stats").stdout.splitlines()[0]


def test_ctl_memory_splits_each_process_rss_into_what_the_allocators_hold(live):
    svc, *_ = live
    memory = json.loads(svc.ctl("--json", "memory").stdout)
    supervisor, shards = memory["supervisor"], memory["shards"]
    assert supervisor["subscriptions"] == 2
    assert [s["shard"] for s in shards] == [0, 1]
    assert [s["dialogs"] for s in shards] == [1, 1]
    for figures in (supervisor, *shards):
        pymalloc = figures["pymalloc"]
        assert 0 < pymalloc["allocated_blocks_bytes"] < pymalloc["arenas_bytes"]
        assert pymalloc["arenas_bytes"] < figures["rss_bytes"]
        assert figures["malloc"]["in_use_bytes"] > 0
    lines = svc.ctl("memory").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["supervisor", "shard", "shard"]
    assert all("pymalloc: blocks" in line and "malloc: in use" in line for line in lines)
