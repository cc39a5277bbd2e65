"""The supervisor's registry: where each client subscription lives and what a shard is owed."""

from __future__ import annotations

import sys

from presence_b2b.ipc.channel import Sub, Unsub
from presence_b2b.ipc.messages import Subscribe
from presence_b2b.server.registry import Entry, Registry
from presence_b2b.server.routing import shard_of

SHARDS = 4


def _ask(sub_id: int, record: str = "sip:b@x", subscriber: str = "sip:a@x") -> Subscribe:
    return Subscribe(sub_id, "presence", record, subscriber)


def _registry(*clients: int) -> Registry:
    registry = Registry(SHARDS)
    for client in clients:
        registry.add_client(client)
    return registry


def test_a_new_subscription_goes_to_the_shard_of_its_record_and_subscriber() -> None:
    registry = _registry(1)
    shard, sub = registry.subscribe(1, _ask(5, "sip:b@x", "sip:a@x"))
    assert shard == shard_of("sip:b@x", "sip:a@x", SHARDS)
    assert (sub.client, sub.id, sub.record, sub.subscriber, sub.refuse) == (
        1, 5, "sip:b@x", "sip:a@x", "",
    )  # fmt: skip
    entry = registry.get(1, 5)
    assert entry is not None and (entry.shard, entry.seq) == (shard, sub.seq)


def test_every_recorded_subscription_gets_its_own_sequence_number() -> None:
    registry = _registry(1, 2)
    seqs = {registry.subscribe(c, _ask(i, f"sip:{i}@x"))[1].seq for c in (1, 2) for i in (1, 2)}
    assert len(seqs) == 4 and 0 not in seqs
    assert len(registry) == 4 and registry.count(1) == 2


def test_an_id_the_client_holds_goes_to_the_shard_that_holds_it_unrecorded() -> None:
    registry = _registry(1)
    shard, first = registry.subscribe(1, _ask(5, "sip:b@x"))
    again_shard, again = registry.subscribe(1, _ask(5, "sip:other@y"))
    assert (again_shard, again.seq) == (shard, first.seq)
    assert len(registry) == 1
    entry = registry.get(1, 5)
    assert entry is not None and entry.record == "sip:b@x"


def test_a_subscription_over_the_clients_limit_is_sent_as_a_refusal_and_not_recorded() -> None:
    registry = _registry(1)
    registry.subscribe(1, _ask(1, "sip:1@x"), limit=1)
    shard, sub = registry.subscribe(1, _ask(2, "sip:2@x"), limit=1)
    assert shard == shard_of("sip:2@x", "sip:a@x", SHARDS)
    assert "server.max_subscriptions_per_client" in sub.refuse
    assert registry.get(1, 2) is None and len(registry) == 1


def test_an_unsubscribe_returns_the_entry_once() -> None:
    registry = _registry(1)
    shard, _ = registry.subscribe(1, _ask(5))
    entry = registry.unsubscribe(1, 5)
    assert entry is not None and entry.shard == shard
    assert registry.unsubscribe(1, 5) is None
    assert registry.unsubscribe(9, 5) is None


def test_a_subscription_the_shard_ended_leaves_the_registry() -> None:
    registry = _registry(1)
    shard, sub = registry.subscribe(1, _ask(5, "sip:b@x"))
    registry.ended(shard, [(1, 5, sub.seq), (2, 1, 1)])  # client 2 is unknown: ignored
    assert registry.get(1, 5) is None


def test_a_late_ended_does_not_remove_a_newer_subscription_under_the_same_id() -> None:
    registry = _registry(1)
    shard, old = registry.subscribe(1, _ask(5))
    registry.unsubscribe(1, 5)
    _, new = registry.subscribe(1, _ask(5))  # id 5 reused after its first life ended
    registry.ended(shard, [(1, 5, old.seq)])
    registry.ended((shard + 1) % SHARDS, [(1, 5, new.seq)])  # the wrong shard
    assert registry.get(1, 5) is not None


def test_a_forgotten_subscription_is_gone() -> None:
    registry = _registry(1)
    registry.subscribe(1, _ask(5))
    registry.forget(1, 5)
    registry.forget(3, 5)  # unknown client: nothing to do
    assert registry.get(1, 5) is None


def test_a_client_that_leaves_takes_its_subscriptions_along() -> None:
    registry = _registry(1, 2)
    registry.subscribe(1, _ask(5, "sip:1@x"))
    registry.subscribe(1, _ask(6, "sip:2@x"))
    registry.subscribe(2, _ask(5, "sip:1@x"))
    assert registry.remove_client(1) == 2
    assert not registry.has_client(1) and len(registry) == 1


def test_a_replay_holds_every_subscription_the_shard_owns_marked_as_such() -> None:
    registry = _registry(1, 2)
    subs = [registry.subscribe(c, _ask(i, f"sip:{i}@x")) for c in (1, 2) for i in range(12)]
    for shard in range(SHARDS):
        replay = registry.replay(shard, restarted=True)
        expected = {(s.client, s.id, s.seq) for index, s in subs if index == shard}
        assert {(s.client, s.id, s.seq) for s in replay if isinstance(s, Sub)} == expected
        assert all(isinstance(s, Sub) and s.replay for s in replay)
    assert not any(s.replay for s in registry.replay(0, restarted=False) if isinstance(s, Sub))


def test_an_owed_unsubscribe_follows_the_replay_once_if_its_client_is_still_there() -> None:
    registry = _registry(1, 2)
    registry.owe_unsubscribe(1, 5, Entry(1, "presence", "sip:b@x", "sip:a@x"))
    registry.owe_unsubscribe(2, 7, Entry(1, "presence", "sip:c@x", "sip:a@x"))
    registry.remove_client(2)
    assert registry.replay(1, restarted=True) == [
        Unsub(1, 5, missed=True, key=("presence", "sip:b@x", "sip:a@x"))
    ]
    assert registry.replay(1, restarted=True) == []


def test_a_subscription_is_kept_in_a_fraction_of_the_bytes_of_its_strings() -> None:
    registry = _registry(1)
    record, subscriber = "sip:bob.builder@example.com", "sip:alice.liddell@example.com"
    registry.subscribe(1, _ask(5, record, subscriber))
    kept = registry._clients[1].get(5)
    assert isinstance(kept, bytes)
    assert sys.getsizeof(kept) < sys.getsizeof(record) + sys.getsizeof(subscriber)


def test_a_replay_gives_back_the_strings_as_they_were_asked_for() -> None:
    registry = _registry(1)
    record, subscriber = "sip:b\u00f6b@x", "sip:\u65e5\u672c@x"
    shard, _ = registry.subscribe(1, Subscribe(5, "dialog", record, subscriber))
    (sub,) = registry.replay(shard, restarted=True)
    assert isinstance(sub, Sub)
    assert (sub.package, sub.record, sub.subscriber) == ("dialog", record, subscriber)


def test_every_package_comes_back_from_its_packed_entry() -> None:
    registry = _registry(1)
    packages = ("presence", "dialog", "reg", "message-summary", "presence.winfo", "x-custom")
    for sub_id, package in enumerate(packages, 1):
        registry.subscribe(1, Subscribe(sub_id, package, f"sip:r{sub_id}@x", "sip:w@x"))
    for sub_id, package in enumerate(packages, 1):
        entry = registry.get(1, sub_id)
        assert entry is not None and entry.package == package and entry.seq == sub_id


def test_a_known_package_packs_as_one_byte() -> None:
    registry = _registry(1)
    registry.subscribe(1, Subscribe(1, "presence", "sip:r@x", "sip:w@x"))
    registry.subscribe(1, Subscribe(2, "x-custom", "sip:r@x", "sip:w@x"))
    known, custom = registry._clients[1].get(1), registry._clients[1].get(2)
    assert isinstance(known, bytes) and isinstance(custom, bytes)
    assert len(known) == 3 + 2 * 2 + len("sip:r@x") + len("sip:w@x")
    assert len(custom) == len(known) + 2 + len("x-custom")


def test_a_subscription_too_long_to_pack_is_kept_whole() -> None:
    registry = _registry(1)
    record = "sip:" + "b" * 70_000 + "@x"
    shard, _ = registry.subscribe(1, _ask(5, record))
    entry = registry.get(1, 5)
    assert entry is not None and entry.record == record
    (sub,) = registry.replay(shard, restarted=False)
    assert isinstance(sub, Sub) and sub.record == record
    assert registry.unsubscribe(1, 5) == entry
