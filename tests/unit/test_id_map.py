"""The paged id map behaves as a dict of its ids, in a fraction of the bytes."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from presence_b2b.id_map import PAGE, IdMap


def test_a_value_is_found_by_its_id_and_a_missing_id_finds_none() -> None:
    ids: IdMap[str] = IdMap()
    ids[7] = "seven"
    assert ids.get(7) == "seven" and ids[7] == "seven" and 7 in ids
    assert ids.get(8) is None and 8 not in ids and ids.get(7 + PAGE * 1000) is None
    with pytest.raises(KeyError):
        ids[8]


def test_setting_an_id_again_replaces_its_value_and_counts_once() -> None:
    ids: IdMap[str] = IdMap()
    ids[3] = "a"
    ids[3] = "b"
    assert len(ids) == 1 and ids[3] == "b"


def test_pop_gives_the_value_once_and_the_length_follows() -> None:
    ids: IdMap[str] = IdMap()
    ids[1], ids[2] = "a", "b"
    assert ids.pop(1) == "a"
    assert ids.pop(1) is None
    assert len(ids) == 1 and bool(ids)
    del ids[2]
    assert len(ids) == 0 and not ids
    with pytest.raises(KeyError):
        del ids[2]


def test_items_go_in_id_order_across_pages() -> None:
    ids: IdMap[int] = IdMap()
    for key in (5 * PAGE + 1, 3, 2**40, PAGE, 0):
        ids[key] = -key
    assert list(ids.items()) == [(k, -k) for k in sorted((5 * PAGE + 1, 3, 2**40, PAGE, 0))]
    assert list(ids) == [0, 3, PAGE, 5 * PAGE + 1, 2**40]
    assert list(ids.values()) == [0, -3, -PAGE, -(5 * PAGE + 1), -(2**40)]


def test_a_page_goes_with_its_last_id() -> None:
    ids: IdMap[str] = IdMap()
    for key in range(PAGE * 3):
        ids[key] = "x"
    for key in range(PAGE * 3):
        ids.pop(key)
    assert ids._pages == {}


def test_it_answers_as_a_dict_would_under_random_operations() -> None:
    rng = random.Random(13)
    ids: IdMap[int] = IdMap()
    model: dict[int, int] = {}
    for step in range(20_000):
        key = rng.choice((rng.randrange(300), rng.randrange(2**33)))
        if rng.random() < 0.6:
            ids[key] = model[key] = step
        else:
            assert ids.pop(key) == model.pop(key, None)
        assert len(ids) == len(model)
    assert list(ids.items()) == sorted(model.items())


def test_dense_ids_take_under_a_third_of_the_bytes_of_a_dict_with_its_int_keys() -> None:
    n, value = 50_000, b"kept"

    def measured(build: object) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            table = build()  # type: ignore[operator]
            used = tracemalloc.get_traced_memory()[0] - before
            del table
            return used
        finally:
            tracemalloc.stop()

    def paged() -> IdMap[bytes]:
        ids: IdMap[bytes] = IdMap()
        for key in range(1000, 1000 + n):
            ids[key] = value
        return ids

    def plain() -> dict[int, bytes]:
        return {key: value for key in range(1000, 1000 + n)}

    assert measured(paged) * 3 < measured(plain)
