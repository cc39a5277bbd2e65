"""Failover down a target list: a failed target is skipped by every request
until its hold (Retry-After, else the default) ends."""

from __future__ import annotations

from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.failover import FailedTargets, Failover

A = Destination(Transport.UDP, "127.0.0.1", 5070)
B = Destination(Transport.UDP, "127.0.0.2", 5071)
C = Destination(Transport.TCP, "::1", 5072)


def test_a_request_starts_at_the_first_target() -> None:
    assert Failover([A, B], FailedTargets(), now=0.0).current == A


def test_a_failure_moves_the_request_to_the_next_target() -> None:
    walk = Failover([A, B, C], FailedTargets(), now=0.0)
    assert walk.next(now=1.0) == B
    assert walk.next(now=2.0) == C


def test_the_list_ends_with_none() -> None:
    walk = Failover([A], FailedTargets(), now=0.0)
    assert walk.next(now=1.0) is None
    assert walk.current is None


def test_another_request_skips_a_target_while_it_is_held() -> None:
    failed = FailedTargets(hold=30.0)
    Failover([A, B], failed, now=0.0).next(now=0.0)
    assert Failover([A, B], failed, now=29.0).current == B
    assert Failover([A, B], failed, now=30.0).current == A


def test_retry_after_sets_the_hold() -> None:
    failed = FailedTargets(hold=30.0)
    Failover([A, B], failed, now=0.0).next(now=0.0, retry_after=120.0)
    assert Failover([A, B], failed, now=119.0).current == B
    assert Failover([A, B], failed, now=120.0).current == A


def test_retry_after_zero_holds_nothing() -> None:
    failed = FailedTargets(hold=30.0)
    Failover([A, B], failed, now=0.0).next(now=0.0, retry_after=0.0)
    assert Failover([A, B], failed, now=1.0).current == A


def test_a_success_ends_the_hold_at_once() -> None:
    failed = FailedTargets(hold=30.0)
    failed.mark(A, now=0.0)
    walk = Failover([A, B], failed, now=40.0)  # hold over: A again
    walk.next(now=40.0)
    assert Failover([A, B], failed, now=41.0).current == B
    failed.succeeded(A)
    assert Failover([A, B], failed, now=41.0).current == A


def test_when_every_target_is_held_retry_at_says_when_the_first_comes_back() -> None:
    failed = FailedTargets(hold=30.0)
    failed.mark(A, now=0.0, retry_after=100.0)
    failed.mark(B, now=0.0, retry_after=50.0)
    walk = Failover([A, B], failed, now=10.0)
    assert walk.current is None
    assert walk.retry_at(now=10.0) == 50.0


def test_retry_at_is_none_while_a_target_is_usable() -> None:
    failed = FailedTargets()
    failed.mark(A, now=0.0)
    assert Failover([A, B], failed, now=1.0).retry_at(now=1.0) is None


def test_the_record_of_failed_targets_is_bounded() -> None:
    failed = FailedTargets(size=2)
    for target in (A, B, C):
        failed.mark(target, now=0.0)
    assert len(failed) == 2
    assert failed.held_until(A, now=1.0) is None
