"""The packed id map behaves as a dict of bytes by id, in a fraction of the bytes."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable

import pytest

from presence_b2b.id_map import IdMap
from presence_b2b.packed_map import PackedIdMap


def test_a_value_is_found_by_its_id_and_a_missing_id_finds_none() -> None:
    values = PackedIdMap()
    values[7] = b"seven"
    assert values.get(7) == b"seven" and values[7] == b"seven" and 7 in values
    assert values.get(8) is None and 8 not in values and values.get(7 + 64 * 1000) is None
    with pytest.raises(KeyError):
        values[8]


def test_a_value_comes_back_as_bytes_that_later_writes_do_not_change() -> None:
    values = PackedIdMap()
    values[1] = b"first"
    got = values.get(1)
    for step in range(200):
        values[1] = bytes([step]) * 40
        values[2] = b"x" * step
    assert isinstance(got, bytes) and got == b"first"


def test_setting_an_id_again_replaces_its_value_and_counts_once() -> None:
    values = PackedIdMap()
    values[3] = b"a"
    values[3] = b"bb"
    assert len(values) == 1 and values[3] == b"bb"


def test_pop_gives_the_value_once_and_the_length_follows() -> None:
    values = PackedIdMap()
    values[1], values[2] = b"a", b"b"
    assert values.pop(1) == b"a"
    assert values.pop(1) is None
    assert len(values) == 1 and bool(values)
    del values[2]
    assert len(values) == 0 and not values
    with pytest.raises(KeyError):
        del values[2]


def test_empty_and_long_values_keep_their_exact_bytes() -> None:
    values = PackedIdMap()
    long = bytes(range(256)) * 300  # past the two-byte length
    values[0], values[1], values[2] = b"", long, b"\xff\xff"
    assert values.get(0) == b"" and 0 in values
    assert values.get(1) == long and values.get(2) == b"\xff\xff"


def test_items_go_in_id_order_across_pages() -> None:
    values = PackedIdMap()
    keys = (5 * 64 + 1, 3, 2**40, 64, 0)
    for key in keys:
        values[key] = str(key).encode()
    assert list(values.items()) == [(k, str(k).encode()) for k in sorted(keys)]
    assert list(values) == sorted(keys)


def test_a_page_goes_with_its_last_id() -> None:
    values = PackedIdMap()
    for key in range(64 * 3):
        values[key] = b"x"
    for key in range(64 * 3):
        values.pop(key)
    assert values._pages == {}


def test_dead_bytes_stay_under_a_third_of_the_live_ones() -> None:
    values = PackedIdMap()
    for key in range(64):
        values[key] = b"v" * 100
    live = 64 * (100 + 2)
    for step in range(10_000):
        values[step % 64] = b"w" * 100
        assert values.blob_bytes() <= live * 4 / 3 + 102


def test_every_value_replaced_once_leaves_no_page_twice_its_size() -> None:
    # What a refresh wave does: every subscription wakes and rests once.
    values = PackedIdMap()
    for key in range(64 * 10):
        values[key] = b"v" * 80
    for key in range(64 * 10):
        values.discard(key)
        values[key] = b"w" * 80
    assert values.blob_bytes() <= 64 * 10 * 82 * 4 / 3


def test_it_answers_as_a_dict_would_under_random_operations() -> None:
    rng = random.Random(13)
    values = PackedIdMap()
    model: dict[int, bytes] = {}
    for step in range(30_000):
        key = rng.choice((rng.randrange(300), rng.randrange(2**33)))
        if rng.random() < 0.6:
            value = rng.randbytes(rng.choice((0, 1, 30, 200, 70_000 if step % 997 == 0 else 5)))
            values[key] = model[key] = value
        else:
            assert values.pop(key) == model.pop(key, None)
        assert len(values) == len(model)
        probe = rng.randrange(300)
        assert values.get(probe) == model.get(probe)
    assert list(values.items()) == sorted(model.items())


def _measured(build: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = build()
        used = tracemalloc.get_traced_memory()[0] - before
        del table
        return used
    finally:
        tracemalloc.stop()


def test_dense_ids_cost_their_bytes_and_a_tenth_more() -> None:
    """tracemalloc counts what was asked for, not pymalloc's rounding: a bytes
    object of its own costs its header and slot on top of the ~33 B shown."""
    n, size = 20_000, 80

    def packed() -> PackedIdMap:
        values = PackedIdMap()
        for key in range(1000, 1000 + n):
            values[key] = key.to_bytes(8, "little") * (size // 8)
        return values

    def objects() -> IdMap[bytes]:
        values: IdMap[bytes] = IdMap()
        for key in range(1000, 1000 + n):
            values[key] = key.to_bytes(8, "little") * (size // 8)
        return values

    per_packed = _measured(packed) / n
    per_object = _measured(objects) / n
    assert per_packed < size * 1.15
    assert per_object - per_packed > 30


def test_discard_removes_without_a_value_and_says_whether_it_was_there() -> None:
    values = PackedIdMap()
    values[4] = b"four"
    assert values.discard(4) is True and 4 not in values and len(values) == 0
    assert values.discard(4) is False
