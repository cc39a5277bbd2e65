"""When a shard freezes its heap."""

import gc
from collections.abc import Iterator

import pytest
from presence_b2b.shard.gc_policy import THRESHOLDS, GcPauses, GcPolicy


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_young_collections_are_made_rarer() -> None:
    GcPolicy()
    assert gc.get_threshold() == THRESHOLDS


def test_a_few_subscriptions_do_not_trigger_a_freeze() -> None:
    assert GcPolicy().tick(500) is False


def test_growth_freezes_the_heap_once() -> None:
    policy = GcPolicy()
    assert policy.tick(5_000) is True
    assert gc.get_freeze_count() > 0
    assert policy.tick(5_500) is False  # 10 % more: not enough


def test_growth_by_a_fifth_freezes_again() -> None:
    policy = GcPolicy()
    policy.tick(10_000)
    assert policy.tick(12_500) is True and policy.freezes == 2


class SteppingClock:
    """Each reading half a second after the last."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_each_collection_is_reported_with_its_generation_and_pause() -> None:
    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda gen, seconds: seen.append((gen, seconds)), SteppingClock())
    try:
        gc.collect(1)
    finally:
        pauses.close()
    assert (1, 0.5) in seen


def test_a_closed_observer_reports_nothing_more() -> None:
    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, seconds: seen.append((generation, seconds)))
    pauses.close()
    pauses.close()
    gc.collect()
    assert seen == []
