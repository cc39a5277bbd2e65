"""The fan-out's dedup index: ids under their keys, as a dict of them would be."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from presence_b2b.shard.key_index import Key, KeyIndex


def _key(i: int) -> Key:
    return ("presence", f"sip:rec{i}@example.com", f"sip:sub{i % 7}@example.com")


class Table:
    """Dialog ids and their keys, as the fan-out's table of dialogs holds them."""

    def __init__(self) -> None:
        self.keys: dict[int, Key] = {}
        self.index = KeyIndex(self.keys.__getitem__)

    def add(self, did: int, key: Key) -> None:
        self.keys[did] = key
        self.index.add(did, key)

    def remove(self, did: int) -> bool:
        removed = self.index.remove(did, self.keys[did])
        del self.keys[did]
        return removed


def test_an_indexed_id_is_found_by_its_key_and_nothing_else_is() -> None:
    t = Table()
    t.add(1, _key(1))
    t.add(2, _key(2))
    assert t.index.get(_key(1)) == 1
    assert t.index.get(_key(2)) == 2
    assert t.index.get(_key(3)) is None
    assert len(t.index) == 2


def test_a_removed_id_is_no_longer_found_and_its_neighbours_still_are() -> None:
    t = Table()
    for i in range(1, 6):
        t.add(i, _key(i))
    assert t.remove(3)
    assert t.index.get(_key(3)) is None
    assert [t.index.get(_key(i)) for i in (1, 2, 4, 5)] == [1, 2, 4, 5]


def test_removing_an_id_that_is_not_the_one_under_its_key_changes_nothing() -> None:
    t = Table()
    t.add(1, _key(1))
    t.keys[2] = _key(1)  # an ending dialog of the same key, no longer indexed
    assert not t.index.remove(2, _key(1))
    assert t.index.get(_key(1)) == 1


def test_ids_whose_keys_share_a_slot_are_each_found() -> None:
    class Same(tuple[str, str, str]):
        def __hash__(self) -> int:
            return 0  # every key in one probe run

    keys = {i: Same(_key(i)) for i in range(1, 20)}
    index = KeyIndex(keys.__getitem__)
    for did, key in keys.items():
        index.add(did, key)
    for did in (3, 7, 11):
        assert index.remove(did, keys[did])
    for did, key in keys.items():
        assert index.get(key) == (None if did in (3, 7, 11) else did)


def test_a_dialog_id_must_be_positive() -> None:
    index = KeyIndex(_key)
    with pytest.raises(ValueError, match="not positive"):
        index.add(0, _key(0))


def test_random_adds_and_removes_agree_with_a_dict() -> None:
    rng = random.Random(7)
    t = Table()
    model: dict[Key, int] = {}
    next_did = 1
    for _ in range(20_000):
        key = _key(rng.randrange(3_000))
        if key in model and rng.random() < 0.5:
            did = model.pop(key)
            assert t.remove(did)
        elif key not in model:
            t.add(next_did, key)
            model[key] = next_did
            next_did += 1
        assert t.index.get(key) == model.get(key)
        assert len(t.index) == len(model)
    for key, did in model.items():
        assert t.index.get(key) == did


def test_the_table_shrinks_when_most_ids_are_gone() -> None:
    t = Table()
    for i in range(1, 10_001):
        t.add(i, _key(i))
    for i in range(1, 9_991):
        t.remove(i)
    assert len(t.index) == 10
    assert len(t.index._slots) <= 64
    assert [t.index.get(_key(i)) for i in range(9_991, 10_001)] == list(range(9_991, 10_001))


def test_an_index_of_many_ids_costs_less_than_a_dict_of_them() -> None:
    keys = {i: _key(i) for i in range(1, 100_001)}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = KeyIndex(keys.__getitem__)
        for did, key in keys.items():
            index.add(did, key)
        per_index = (tracemalloc.get_traced_memory()[0] - before) / len(keys)
        before = tracemalloc.get_traced_memory()[0]
        as_dict = {key: did for did, key in keys.items()}
        per_dict = (tracemalloc.get_traced_memory()[0] - before) / len(keys)
    finally:
        tracemalloc.stop()
    assert len(as_dict) == len(index)
    assert per_index <= 33 < per_dict, (per_index, per_dict)
