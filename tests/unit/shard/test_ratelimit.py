"""The token bucket behind sip.subscribe_rate."""

import pytest
from presence_b2b.shard.ratelimit import TokenBucket


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
