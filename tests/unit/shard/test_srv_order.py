"""RFC 2782 ordering of SRV targets: priority first, then a weighted random order."""

from __future__ import annotations

import random
from collections import Counter

from presence_b2b.shard.dns_answer import Srv
from presence_b2b.shard.srv_order import order_srv


def srv(target: str, priority: int = 10, weight: int = 10) -> Srv:
    return Srv(priority, weight, 5060, target)


def test_lower_priority_always_comes_first() -> None:
    records = [srv("late", priority=20), srv("early", priority=10), srv("last", priority=30)]
    for seed in range(20):
        ordered = order_srv(records, random.Random(seed))
        assert [r.target for r in ordered] == ["early", "late", "last"]


def test_every_record_appears_once() -> None:
    records = [srv(f"t{i}", priority=i % 2, weight=i) for i in range(7)]
    assert sorted(order_srv(records, random.Random(1)), key=str) == sorted(records, key=str)


def test_first_choice_follows_the_weights() -> None:
    records = [srv("heavy", weight=90), srv("light", weight=10)]
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(4000))
    assert 0.86 < firsts["heavy"] / 4000 < 0.94


def test_zero_weight_records_are_chosen_rarely_but_still_listed() -> None:
    records = [srv("zero", weight=0), srv("some", weight=100)]
    rng = random.Random(3)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(2000))
    assert firsts["zero"] < 60  # only when the draw is exactly 0: about 1 in 101
    assert {r.target for r in order_srv(records, rng)} == {"zero", "some"}


def test_all_zero_weights_still_give_every_record() -> None:
    records = [srv("a", weight=0), srv("b", weight=0)]
    assert {r.target for r in order_srv(records, random.Random(0))} == {"a", "b"}
