"""The token bucket behind sip.subscribe_rate."""

import pytest
from presence_b2b.shard.ratelimit import HoldQueue, TokenBucket


def test_a_new_bucket_allows_a_burst_of_one_seconds_worth() -> None:
    b = TokenBucket(3.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    b = TokenBucket(2.0)
    while b.take(0.0):
        pass
    assert b.next_token_at(0.0) == pytest.approx(0.5)
    assert not b.take(0.4)
    assert b.take(0.5)


def test_saved_tokens_never_exceed_the_burst() -> None:
    b = TokenBucket(1.0, burst=2.0)
    assert sum(b.take(100.0) for _ in range(10)) == 2


def test_a_rate_below_one_per_second_still_allows_one_request() -> None:
    b = TokenBucket(0.1)
    assert b.take(0.0) and not b.take(0.0)
    assert b.next_token_at(0.0) == pytest.approx(10.0)


def test_zero_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0)


def test_the_hold_queue_sends_at_once_while_tokens_last_then_holds() -> None:
    q: HoldQueue[str] = HoldQueue(2.0)
    assert [q.admit(i, f"s{i}", 0.0) for i in range(3)] == [True, True, False]
    assert len(q) == 1
    assert q.next_release(0.0) == pytest.approx(0.5)


def test_held_items_leave_oldest_first_as_tokens_come_back() -> None:
    q: HoldQueue[str] = HoldQueue(1.0)
    for i in range(4):
        q.admit(i, f"s{i}", 0.0)
    assert q.release(1.0, lambda item: True) == ["s1"]
    assert q.release(2.0, lambda item: True) == ["s2"]
    assert q.release(3.0, lambda item: True) == ["s3"]
    assert q.next_release(3.0) is None


def test_a_new_ask_while_others_wait_queues_behind_them_even_with_a_token() -> None:
    q: HoldQueue[str] = HoldQueue(1.0, burst=5)
    q.bucket.take(0.0)
    q._held[9] = "old"
    assert not q.admit(1, "new", 0.0)
    assert q.release(0.0, lambda item: True) == ["old", "new"]


def test_stale_held_items_are_skipped_without_spending_a_token() -> None:
    q: HoldQueue[str] = HoldQueue(1.0)
    q.admit(0, "s0", 0.0)
    q.admit(1, "stale", 0.0)
    q.admit(2, "s2", 0.0)
    assert q.release(1.0, lambda item: item != "stale") == ["s2"]
    assert len(q) == 0


def test_a_bucket_a_float_hair_short_of_a_token_does_not_wait_forever() -> None:
    bucket = TokenBucket(1.4, burst=1.4)
    now = 1000.0
    assert bucket.take(now)
    for _ in range(50):  # every token it promises, it gives at that time
        now = bucket.next_token_at(now)
        assert bucket.take(now)
