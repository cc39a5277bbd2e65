"""The write-behind buffer: coalescing per dialog and when a batch is due."""

from __future__ import annotations

from presence_b2b.store.buffer import RETRY_AFTER, WriteBehind
from presence_b2b.store.record import Change, DialogRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def dialog(n: int = 1, cseq: int = 1) -> DialogRecord:
    return DialogRecord(
        package="presence", record=f"sip:r{n}@x", subscriber="sip:s@y", call_id="c",
        local_tag="l", remote_tag=None, local_cseq=cseq, route_set=(), remote_target="sip:t@z",
        expires_at=0.0, refresh_at=0.0, last_status=None, cseq_high=64,
    )  # fmt: skip


def test_nothing_is_due_while_the_buffer_is_empty() -> None:
    buf = WriteBehind(0.2, FakeClock())
    assert buf.next_deadline() is None and not buf.is_due()


def test_a_routine_change_is_due_one_interval_after_it_was_put() -> None:
    clock = FakeClock()
    buf = WriteBehind(0.2, clock)
    buf.put(dialog())
    clock.now += 0.19
    assert not buf.is_due()
    clock.now += 0.01
    assert buf.is_due()


def test_later_changes_do_not_push_the_deadline_back() -> None:
    clock = FakeClock()
    buf = WriteBehind(0.2, clock)
    buf.put(dialog(1))
    clock.now += 0.1
    buf.put(dialog(2))
    assert buf.next_deadline() == 100.2


def test_each_urgent_change_makes_the_batch_due_at_once() -> None:
    for change in (Change.CONFIRMED, Change.REFRESHED, Change.CREATED, Change.TERMINATED):
        clock = FakeClock()
        buf = WriteBehind(0.2, clock)
        buf.put(dialog(1))
        buf.put(dialog(2), change)
        assert buf.is_due(), change


def test_only_the_newest_state_of_a_dialog_is_written() -> None:
    buf = WriteBehind(0.2, FakeClock())
    for cseq in (1, 2, 3):
        buf.put(dialog(1, cseq))
    batch = buf.take()
    assert [r.local_cseq for r in batch.upserts.values()] == [3]
    assert buf.coalesced == 2


def test_a_delete_replaces_a_waiting_put_and_a_put_replaces_a_delete() -> None:
    buf = WriteBehind(0.2, FakeClock())
    buf.put(dialog(1))
    buf.delete(dialog(1).key)
    buf.put(dialog(2))
    buf.delete(dialog(2).key)
    buf.put(dialog(2), Change.CREATED)
    batch = buf.take()
    assert batch.deletes == {dialog(1).key}
    assert set(batch.upserts) == {dialog(2).key}


def test_take_empties_the_buffer() -> None:
    buf = WriteBehind(0.2, FakeClock())
    buf.put(dialog())
    assert len(buf.take()) == 1
    assert len(buf) == 0 and buf.next_deadline() is None


def test_a_batch_given_back_yields_to_newer_changes_and_waits_an_interval() -> None:
    clock = FakeClock()
    buf = WriteBehind(0.2, clock)
    buf.put(dialog(1, 1))
    buf.put(dialog(2, 1))
    failed = buf.take()
    buf.put(dialog(1, 5), Change.ROUTINE)
    buf.give_back(failed)
    batch = buf.take()
    assert {k[1]: r.local_cseq for k, r in batch.upserts.items()} == {"sip:r1@x": 5, "sip:r2@x": 1}


def test_a_failed_batch_is_not_retried_in_a_tight_loop_even_without_an_interval() -> None:
    clock = FakeClock()
    buf = WriteBehind(0.0, clock)
    buf.put(dialog(1), Change.CREATED)
    buf.give_back(buf.take())
    assert buf.next_deadline() == 100.0 + RETRY_AFTER
