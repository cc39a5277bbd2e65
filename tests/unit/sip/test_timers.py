"""TimerQueue: one heap, lazy deletion, lag accounting."""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st
from presence_b2b.shard.subscription import MachineParams, SendInDialog, Subscription, TimerKind
from presence_b2b.sip.timers import LAG_BUCKETS, TimerQueue


class Owner:
    __slots__ = ("name", "timer_seq")

    def __init__(self, name: str) -> None:
        self.name = name
        self.timer_seq = 0

    def __repr__(self) -> str:
        return self.name


def test_due_owners_come_out_earliest_first() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a, b, c = Owner("a"), Owner("b"), Owner("c")
    q.schedule(b, 20.0)
    q.schedule(a, 10.0)
    q.schedule(c, 30.0)
    assert q.pop_due(25.0) == [a, b]
    assert q.pop_due(100.0) == [c]


def test_nothing_is_due_before_its_deadline() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    q.schedule(a, 10.0)
    assert q.pop_due(9.999) == []
    assert q.pop_due(10.0) == [a]


def test_equal_deadlines_fire_in_scheduling_order() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner(str(i)) for i in range(5)]
    for o in owners:
        q.schedule(o, 1.0)
    assert q.pop_due(1.0) == owners


def test_rescheduling_moves_the_deadline_and_leaves_a_stale_entry_behind() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    q.schedule(a, 10.0)
    q.schedule(a, 50.0)
    assert len(q) == 1
    assert q.heap_size() == 2
    assert q.pop_due(20.0) == []
    assert q.stale_skipped == 1
    assert q.pop_due(50.0) == [a]


def test_rescheduling_earlier_fires_once() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    q.schedule(a, 50.0)
    q.schedule(a, 10.0)
    assert q.pop_due(100.0) == [a]


def test_rescheduling_to_the_same_deadline_fires_once() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    q.schedule(a, 10.0)
    q.schedule(a, 10.0)
    assert q.pop_due(10.0) == [a]
    assert len(q) == 0


def test_cancel_and_schedule_none_disarm() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a, b = Owner("a"), Owner("b")
    q.schedule(a, 10.0)
    q.schedule(b, 10.0)
    q.cancel(a)
    q.schedule(b, None)
    assert len(q) == 0
    assert q.pop_due(100.0) == []
    q.cancel(a)  # twice is harmless
    assert len(q) == 0


def test_len_counts_live_entries_only() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner(str(i)) for i in range(10)]
    for i, o in enumerate(owners):
        q.schedule(o, float(i))
        q.schedule(o, float(i + 100))
    assert len(q) == 10
    q.pop_due(104.0)
    assert len(q) == 5


def test_next_deadline_skips_stale_entries() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a, b = Owner("a"), Owner("b")
    assert q.next_deadline() is None
    q.schedule(a, 10.0)
    q.schedule(b, 20.0)
    q.schedule(a, 30.0)
    assert q.next_deadline() == 20.0
    q.cancel(b)
    assert q.next_deadline() == 30.0


def test_pop_due_limit_leaves_the_rest_for_the_next_call() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner(str(i)) for i in range(5)]
    for i, o in enumerate(owners):
        q.schedule(o, float(i))
    assert q.pop_due(10.0, limit=2) == owners[:2]
    assert q.pop_due(10.0, limit=2) == owners[2:4]
    assert q.pop_due(10.0) == owners[4:]


def test_lag_records_how_late_each_timer_fired() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a, b = Owner("a"), Owner("b")
    q.schedule(a, 10.0)
    q.schedule(b, 10.5)
    q.pop_due(11.0)
    assert q.lag.count == 2
    assert q.lag.sum == 1.5
    assert q.lag.max == 1.0
    cumulative = dict(q.lag.cumulative())
    assert cumulative[0.5] == 1
    assert cumulative[1.0] == 2
    assert cumulative[float("inf")] == 2
    assert len(q.lag.buckets) == len(LAG_BUCKETS) + 1


def test_stale_entries_do_not_count_as_lag() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    q.schedule(a, 1.0)
    q.schedule(a, 100.0)
    q.pop_due(50.0)
    assert q.lag.count == 0


def test_heap_is_compacted_when_stale_entries_pile_up() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a = Owner("a")
    for i in range(10_000):
        q.schedule(a, float(i))
    assert q.heap_size() < 3000
    assert q.pop_due(1e9) == [a]


def test_subscriptions_are_timer_owners() -> None:
    q: TimerQueue[Subscription] = TimerQueue()
    sub = Subscription(1, "sip:r@x", "sip:s@x", MachineParams(max_subscribe_delay=3))
    sub.start(0.0)
    q.schedule(sub, sub.deadline)
    (due,) = q.pop_due(10.0)
    assert due is sub
    assert sub.timer_kind is TimerKind.START_DELAY
    actions = due.on_timer(10.0)
    assert actions and not isinstance(actions[0], SendInDialog)


@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.one_of(st.none(), st.floats(0, 1000))),
        max_size=200,
    ),
    st.floats(0, 1000),
)
def test_pop_due_returns_exactly_the_owners_whose_last_deadline_passed(
    ops: list[tuple[int, float | None]], now: float
) -> None:
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner(str(i)) for i in range(10)]
    expected: dict[int, float | None] = {}
    for i, deadline in ops:
        q.schedule(owners[i], deadline)
        expected[i] = deadline
    assert len(q) == sum(d is not None for d in expected.values())
    due = q.pop_due(now)
    want = {i for i, d in expected.items() if d is not None and d <= now}
    assert sorted(int(o.name) for o in due) == sorted(want)
    fired_at = [expected[int(o.name)] or 0.0 for o in due]
    assert fired_at == sorted(fired_at)
    assert len(q) == sum(d is not None for d in expected.values()) - len(want)


def test_many_entries_all_fire_once() -> None:
    # correctness at scale, not speed (speed is in the benchmark, never in a test)
    rng = random.Random(7)
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner("") for _ in range(100_000)]
    for o in owners:
        q.schedule(o, rng.uniform(0, 3600))
    fired = q.pop_due(3600.0)
    assert len(fired) == len(owners)
    assert len(q) == 0


class _Model:
    """What the queue must do, the slow and obvious way."""

    def __init__(self) -> None:
        self.armed: dict[int, tuple[float, int]] = {}
        self.seq = 0

    def schedule(self, i: int, deadline: float | None) -> None:
        if deadline is None:
            self.armed.pop(i, None)
        else:
            self.seq += 1
            self.armed[i] = (deadline, self.seq)

    def pop_due(self, now: float) -> list[int]:
        due = sorted((d, s, i) for i, (d, s) in self.armed.items() if d <= now)
        for _, _, i in due:
            del self.armed[i]
        return [i for _, _, i in due]

    def next_deadline(self) -> float | None:
        return min((d for d, _ in self.armed.values()), default=None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["schedule", "pop", "peek"]),
            st.integers(0, 19),
            st.one_of(st.none(), st.floats(0, 20)),
        ),
        max_size=300,
    )
)
def test_near_and_far_deadlines_fire_as_one_queue_would_as_the_clock_moves(
    ops: list[tuple[str, int, float | None]],
) -> None:
    q: TimerQueue[Owner] = TimerQueue()
    model = _Model()
    owners = [Owner(str(i)) for i in range(20)]
    now = 0.0
    for op, i, value in ops:
        if op == "schedule":
            deadline = None if value is None else now + value
            q.schedule(owners[i], deadline)
            model.schedule(i, deadline)
        elif op == "pop":
            now += 0.0 if value is None else value / 4
            assert [int(o.name) for o in q.pop_due(now)] == model.pop_due(now)
        else:
            assert q.next_deadline() == model.next_deadline()
        assert len(q) == len(model.armed)


def test_an_infinite_deadline_does_not_hide_a_far_one() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    never, later = Owner("never"), Owner("later")
    q.schedule(never, float("inf"))
    q.schedule(later, 3600.0)
    assert q.next_deadline() == 3600.0
    assert q.pop_due(3600.0) == [later]
    assert q.next_deadline() == float("inf")


def test_a_deadline_an_hour_away_costs_no_heap_entry_until_its_time() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    owners = [Owner("") for _ in range(10_000)]
    q.pop_due(0.0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, o in enumerate(owners):
        q.schedule(o, 3600.0 + i / 100)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # The owner's timer_seq (an int object here) and 24 bytes of arrays; a
    # (deadline, seq, owner) tuple in the heap with its float came to ~130.
    assert used / len(owners) < 72
    assert q.pop_due(3700.0) == owners


def test_a_far_entry_handed_over_fires_for_its_new_owner_only() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    old, new = Owner("old"), Owner("new")
    q.pop_due(0.0)
    q.schedule(old, 3600.0)
    size = q.heap_size()
    q.hand_over(old, new, 3600.0)
    assert (old.timer_seq == 0, new.timer_seq != 0) == (True, True)
    assert (len(q), q.heap_size()) == (1, size)
    assert q.pop_due(3600.0) == [new]


def test_a_far_entry_handed_over_keeps_its_place_among_equal_deadlines() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    a, old, c, new = Owner("a"), Owner("old"), Owner("c"), Owner("new")
    for o in (a, old, c):
        q.schedule(o, 3600.0)
    q.hand_over(old, new, 3600.0)
    assert q.pop_due(3600.0) == [a, new, c]


def test_a_near_entry_handed_over_fires_for_its_new_owner_only() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    old, new, other = Owner("old"), Owner("new"), Owner("other")
    q.schedule(other, 11.5)
    q.pop_due(10.0)  # the second from 11 on is near now: in the heap
    q.schedule(old, 11.0)
    q.hand_over(old, new, 11.0)
    assert len(q) == 2 and old.timer_seq == 0
    assert q.pop_due(12.0) == [new, other]


def test_handing_over_an_unarmed_owner_arms_nothing() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    old, new = Owner("old"), Owner("new")
    q.hand_over(old, new, 5.0)
    assert len(q) == 0 and new.timer_seq == 0


def test_handing_over_with_a_deadline_the_entry_does_not_have_arms_the_new_owner_anew() -> None:
    q: TimerQueue[Owner] = TimerQueue()
    old, new = Owner("old"), Owner("new")
    q.schedule(old, 100.0)
    q.hand_over(old, new, 200.0)
    assert len(q) == 1
    assert q.pop_due(150.0) == []
    assert q.pop_due(200.0) == [new]
