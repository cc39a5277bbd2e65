"""Subscriptions at rest: a quiet confirmed subscription is kept packed and
woken, unchanged, by whatever it has to do next; on a virtual clock."""

from __future__ import annotations

import sys
import tracemalloc

from engine_harness import PIDF_OPEN, Harness
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState
from presence_b2b.shard.subscription import State, TimerKind
from presence_b2b.shard.usage import RestingUsage, Usage, packed_call_id, packed_deadline, rest
from presence_b2b.sip.headers import parse_cseq, parse_tag
from presence_b2b.sip.message import Request
from presence_b2b.store.record import Change

from presence_b2b.packed_map import PackedIdMap

PIDF_CLOSED = PIDF_OPEN.replace(b"<basic>open</basic>", b"<basic>closed</basic>")


def quiet(h: Harness) -> None:
    """Long enough for a finished transaction to end and the engine to let it rest."""
    h.advance(h.engine.rest_after + 2)


def test_a_confirmed_subscription_rests_once_quiet_for_longer_than_timer_k() -> None:
    h = Harness()
    h.established()
    h.advance(h.engine.rest_after - 1)
    assert isinstance(h.engine.usages[1], Usage)
    h.advance(3)
    assert isinstance(h.engine.usages[1], RestingUsage)
    assert h.engine.resting == 1


def test_the_output_names_each_subscription_that_went_to_rest_once() -> None:
    h = Harness()
    h.established()
    quiet(h)
    quiet(h)
    assert h.rested == [1]


def test_a_subscription_at_rest_wakes_for_a_notify_and_delivers_it() -> None:
    h = Harness()
    first = h.established()
    quiet(h)
    h.delivered.clear()
    h.notify(first, "active;expires=500", PIDF_CLOSED)
    assert h.responses()[-1].status == 200
    (status,) = h.delivered
    assert isinstance(status, Status) and status.presentity is not None
    assert isinstance(h.engine.usages[1], Usage)
    assert h.engine.resting == 0


def test_a_subscription_at_rest_still_rejects_an_older_notify() -> None:
    h = Harness()
    first = h.established()
    old = h.notify_request(first, "active;expires=500", PIDF_CLOSED)  # CSeq 2, held back
    h.notify(first, "active;expires=500", PIDF_OPEN)  # CSeq 3
    quiet(h)
    h.delivered.clear()
    h.feed(old)
    assert h.responses()[-1].status == 500
    assert h.delivered == []


def test_a_subscription_at_rest_refreshes_in_its_dialog_on_time() -> None:
    h = Harness()
    first = h.established()
    quiet(h)
    assert isinstance(h.engine.usages[1], RestingUsage)
    refresh_at = packed_deadline(h.engine._rest_data[1])
    h.advance(refresh_at - h.clock.now - 0.01)
    assert len(h.requests()) == 1
    h.advance(0.02)
    again = h.requests()[-1]
    assert again.get("Call-ID") == first.get("Call-ID")
    assert parse_tag(again.get("From") or "") == parse_tag(first.get("From") or "")
    assert parse_tag(again.get("To") or "") == "srv1"
    assert parse_cseq(again.get("CSeq") or "").number == 2
    assert again.uri == "sip:127.0.0.1:5090"


def test_a_subscription_at_rest_unsubscribes_in_its_dialog() -> None:
    h = Harness()
    first = h.established()
    quiet(h)
    assert h.unsubscribe(1)
    bye = h.requests()[-1]
    assert bye.get("Expires") == "0"
    assert bye.get("Call-ID") == first.get("Call-ID")
    h.answer(bye, 200, ("Expires", "0"))
    h.notify(bye, "terminated;reason=timeout")
    status = h.delivered[-1]
    assert isinstance(status, Status) and status.state is SubscriptionState.TERMINATED


def test_waking_gives_back_the_subscription_that_went_to_rest() -> None:
    h = Harness()
    h.established()
    h.notify(h.requests()[-1], "active;expires=600", PIDF_CLOSED)
    before = h.engine.snapshot(1)
    quiet(h)
    assert isinstance(h.engine.usages[1], RestingUsage)
    after = h.engine.snapshot(1)
    assert after == before


def test_the_packed_data_of_a_subscription_is_kept_while_it_rests_and_goes_when_it_wakes() -> None:
    h = Harness()
    first = h.established()
    h.established(2)
    quiet(h)
    assert sorted(h.engine._rest_data) == [1, 2]
    h.notify(first, "active;expires=500", PIDF_CLOSED)
    assert isinstance(h.engine.usages[1], Usage)
    assert sorted(h.engine._rest_data) == [2]
    quiet(h)
    assert sorted(h.engine._rest_data) == [1, 2]


def test_peeking_at_a_resting_subscription_reads_it_and_leaves_it_at_rest() -> None:
    h = Harness()
    first = h.established()
    quiet(h)
    resting = h.engine.usages[1]
    peeked = h.engine.peek(1)
    assert isinstance(peeked, Usage) and peeked.dialog is not None
    assert peeked.dialog.call_id == first.get("Call-ID")
    assert h.engine.usages[1] is resting
    assert h.engine.resting == 1


def test_peeking_at_an_unknown_subscription_finds_none() -> None:
    assert Harness().engine.peek(7) is None


def test_a_subscription_waiting_to_retry_a_refresh_stays_awake() -> None:
    h = Harness()
    h.established()
    h.advance(h.engine.usages[1].deadline - h.clock.now)  # the refresh goes out
    h.answer(h.requests()[-1], 500)  # and fails: retried before the expiry
    quiet(h)
    assert isinstance(h.engine.usages[1], Usage)


def test_a_resting_subscription_costs_under_three_quarters_of_an_awake_one() -> None:
    # Both with the record and subscriber strings it shares with the fan-out.
    h = Harness()
    for i in range(100):
        h.established(i)
    quiet(h)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100, 1100):
        h.established(i)
    h.advance(6)  # the set-up's transactions have ended
    h.sent.clear()
    h.delivered.clear()
    awake = tracemalloc.get_traced_memory()[0] - before
    quiet(h)
    resting = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert h.engine.resting == 1100
    assert resting < awake * 3 / 4


def _usage_with_everything(h: Harness) -> Usage:
    h.established()
    usage = h.engine.usage(1)
    assert usage is not None and usage.dialog is not None
    usage.notifies, usage.errors, usage.retries, usage.ignored = 7, 2, 3, 4
    usage.last_code, usage.last_failure = 503, FailureKind.SIP_ERROR
    usage._target = "sip:other@127.0.0.1:5091"
    usage._redirects = 1
    usage._last_resubscribe = 1234.5
    usage.cseq_high = 99
    usage.dialog.route_set = ["sip:p1@127.0.0.1;lr", "sip:p2@127.0.0.1;lr"]
    usage.dialog.local_uri = "sip:alias@example.com"
    usage.dialog.remote_tag = "srv\udcff1"  # a byte the parser could not decode
    return usage


def test_rest_and_wake_keep_every_field_of_a_subscription_and_its_dialog() -> None:
    h = Harness()
    usage = _usage_with_everything(h)
    table = PackedIdMap()
    resting = rest(usage, table)
    assert resting is not None
    woken = resting.wake(table[usage.sub_id], usage.params, usage.rng)
    for name in _packed_slots():
        assert getattr(woken, name) == getattr(usage, name), name
    assert woken.dialog is not None and usage.dialog is not None
    for name in _DIALOG_SLOTS:
        assert getattr(woken.dialog, name) == getattr(usage.dialog, name), name


_DIALOG_SLOTS = (
    "_routes", "call_id", "confirmed", "keep_preset_route", "local_cseq", "local_tag",
    "local_uri", "remote_cseq", "remote_tag", "remote_target", "remote_uri",
)
#: Slots that are not kept, and why.
_NOT_KEPT = {
    "dialog": "compared field by field",
    "timer_seq": "the timer entry is handed over by the engine",
    "touched": "the engine touches what it wakes",
    "lists": "a resource list does not rest",
    "_contacts": "untried 3xx Contacts do not rest",
    "_refresh_failure": "a failed refresh does not rest",
    "_no_notify_by": "Timer N does not rest",
    "_outstanding": "a SUBSCRIBE in flight does not rest",
}


def _attributes(cls: type) -> set[str]:
    """The instance attributes of a class, interpreted (slots) or compiled."""
    compiled = getattr(cls, "__mypyc_attrs__", None)
    if compiled is not None:
        return set(compiled)
    return {s for c in cls.__mro__ for s in getattr(c, "__slots__", ())}


def _packed_slots() -> list[str]:
    return sorted(_attributes(Usage) - set(_NOT_KEPT))


def test_every_slot_of_a_usage_and_its_dialog_is_kept_at_rest_or_named_as_not() -> None:
    # A slot added later must be packed by rest() or listed in _NOT_KEPT with a reason.
    from presence_b2b.sip.dialog import Dialog

    assert _attributes(Dialog) == set(_DIALOG_SLOTS)
    assert len(_packed_slots()) > 20
    h = Harness()
    usage = _usage_with_everything(h)
    table = PackedIdMap()
    resting = rest(usage, table)
    assert resting is not None
    woken = resting.wake(table[usage.sub_id], usage.params, usage.rng)
    assert [n for n in _packed_slots() if getattr(woken, n) != getattr(usage, n)] == []


def test_a_subscription_with_a_request_in_flight_does_not_rest() -> None:
    h = Harness()
    h.established()
    h.refresh(1)  # operator's refresh: a SUBSCRIBE is out, unanswered
    usage = h.engine.usage(1)
    assert usage is not None and usage.outstanding
    assert rest(usage, PackedIdMap()) is None


def test_a_refresh_unanswered_for_longer_than_rest_after_keeps_it_awake_for_the_answer() -> None:
    h = Harness()
    h.established()
    h.refresh(1)
    refresh = h.requests()[-1]
    h.advance(h.engine.rest_after + 2)  # retransmitting, Timer F still far
    assert isinstance(h.engine.usages[1], Usage)
    h.answer(refresh, 200, ("Expires", "900"))
    h.notify(refresh, "active;expires=900", PIDF_OPEN)
    sent = len(h.requests())
    h.advance(600)  # the answer was taken: no timeout, no retry, no refresh yet
    assert len(h.requests()) == sent
    assert not any(isinstance(m, Failure) for m in h.delivered)
    assert h.engine.state_of(1) is State.CONFIRMED


def test_a_quiet_subscription_rests_after_timer_k_not_after_timer_f() -> None:
    h = Harness()
    h.established()
    h.advance(h.engine.sip.t4 + 3)
    assert isinstance(h.engine.usages[1], RestingUsage)


def test_counters_of_any_size_rest_and_wake_unchanged() -> None:
    h = Harness()
    h.established()
    usage = h.engine.usage(1)
    assert usage is not None and usage.dialog is not None
    usage.errors, usage.notifies, usage.dialog.local_cseq = 2**40, 127, 128
    table = PackedIdMap()
    resting = rest(usage, table)
    assert resting is not None
    woken = resting.wake(table[1], usage.params, usage.rng)
    assert (woken.errors, woken.notifies) == (2**40, 127)
    assert woken.dialog is not None and woken.dialog.local_cseq == 128


def test_a_subscription_with_a_negative_counter_stays_awake() -> None:
    h = Harness()
    h.established()
    usage = h.engine.usage(1)
    assert usage is not None
    usage.errors = -1
    table = PackedIdMap()
    assert rest(usage, table) is None and not table


def test_a_typical_subscription_rests_in_under_ninety_bytes() -> None:
    # Times, counters, our Call-ID's and tag's random bytes, the Call-ID's
    # host and the notifier's tag: a fixed struct and hex strings took ~150.
    h = Harness()
    h.established()
    quiet(h)
    assert len(h.engine._rest_data[1]) < 90


def test_any_call_id_and_local_tag_come_back_from_rest_as_they_were() -> None:
    h = Harness()
    h.established()
    usage = h.engine.usage(1)
    assert usage is not None and usage.dialog is not None
    for call_id in ("abc@host", "7.74e8f58603b0a2a939f819cd2573e883@127.0.0.1",
                    "1.74e8f58603b0a2a939f819cd2573e883@a@b",
                    "1.74E8F58603B0A2A939F819CD2573E883@127.0.0.1",
                    "1.74e8f58603b0a2a939f819cd2573e883@", "1.74e8f58603b0a2a939f819cd2573e8@h"):
        usage.dialog.call_id = call_id
        usage.dialog.local_tag = call_id[:16]
        table = PackedIdMap()
        resting = rest(usage, table)
        assert resting is not None
        assert packed_call_id(table[1], 1) == call_id
        woken = resting.wake(table[1], usage.params, usage.rng)
        assert woken.dialog is not None
        assert (woken.dialog.call_id, woken.dialog.local_tag) == (call_id, call_id[:16])


def test_a_woken_subscription_keeps_its_timer_and_its_kind() -> None:
    h = Harness()
    h.established()
    deadline = h.engine.usage(1).deadline  # type: ignore[union-attr]
    quiet(h)
    usage = h.engine.usage(1)
    assert usage is not None
    assert usage.deadline == deadline and usage.timer_kind is TimerKind.REFRESH
    assert usage.timer_seq != 0 and usage.state is State.CONFIRMED
    assert h.engine.next_deadline() is not None


def test_a_notify_for_a_resting_dialog_from_another_fork_is_refused_and_it_rests_on() -> None:
    h = Harness()
    first = h.established()
    quiet(h)
    h.notify(first, "active;expires=600", PIDF_OPEN, tag="other")
    assert h.responses()[-1].status == 481
    quiet(h)
    assert isinstance(h.engine.usages[1], RestingUsage)


def test_requests_of_the_harness_are_requests() -> None:
    h = Harness()
    h.established()
    assert all(isinstance(r, Request) for r in h.requests())


def test_a_resting_subscription_that_cannot_wake_fails_and_its_notify_gets_481() -> None:
    h = Harness()
    first = h.established()
    h.established(2)
    quiet(h)
    resting = h.engine.usages[1]
    assert isinstance(resting, RestingUsage)
    # What a bug in packing would leave: the Call-ID that finds it, then nothing.
    data = h.engine._rest_data[1]
    call_id = packed_call_id(data, 1)
    host = call_id.rpartition("@")[2].encode()
    end = data.index(host) + len(host)
    h.engine._rest_data[1] = data[:end]
    assert packed_call_id(h.engine._rest_data[1], 1) == call_id
    h.delivered.clear()
    h.notify(first, "active;expires=600", PIDF_OPEN)
    assert h.responses()[-1].status == 481
    (failure,) = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.INTERNAL
    assert 1 in h.finished and 1 not in h.engine.usages
    assert h.engine.resting == 1  # the other one rests on
    assert sorted(h.engine._rest_data) == [2]
    assert h.obs.counts["failed", "internal"] == 1


def test_a_resting_subscription_that_cannot_wake_for_its_timer_fails() -> None:
    h = Harness()
    h.established()
    quiet(h)
    resting = h.engine.usages[1]
    assert isinstance(resting, RestingUsage)
    deadline = packed_deadline(h.engine._rest_data[1])
    h.engine._rest_data[1] = h.engine._rest_data[1][:10]
    h.delivered.clear()
    h.advance(deadline - h.clock.now + 1)
    assert [type(m) for m in h.delivered] == [Failure]
    assert len(h.engine.usages) == 0 and h.engine.resting == 0
    assert h.engine.next_deadline() is None



def test_once_a_wave_has_gone_to_rest_the_awake_queue_gives_back_its_table() -> None:
    h = Harness()
    for i in range(3000):
        h.subscribe(i)
        sub = h.requests()[-1]
        h.answer(sub, 200, ("Expires", "600"), ("Contact", "<sip:127.0.0.1:5090>"))
        h.notify(sub, "active;expires=600", PIDF_OPEN)
    peak = sys.getsizeof(h.engine._awake)
    quiet(h)
    assert h.engine.resting == 3000
    assert sys.getsizeof(h.engine._awake) < peak / 10


def test_the_state_of_a_resting_subscription_is_read_without_waking_it() -> None:
    h = Harness()
    h.established()
    quiet(h)
    assert h.engine.state_of(1) is State.CONFIRMED
    assert isinstance(h.engine.usages[1], RestingUsage)
    assert h.engine.state_of(2) is None


def test_a_resting_subscription_that_cannot_wake_is_noted_for_the_store_as_terminated() -> None:
    h = Harness(journal=True)
    h.established()
    quiet(h)
    h.engine.take_changes()
    resting = h.engine.usages[1]
    assert isinstance(resting, RestingUsage)
    h.engine._rest_data[resting.sub_id] = b"\x00"
    assert h.engine.usage(1) is None
    assert [c for _, c in h.engine.take_changes().values()] == [Change.TERMINATED]


def test_data_cut_short_names_no_call_id() -> None:
    h = Harness()
    h.established()
    quiet(h)
    data = h.engine._rest_data[1]
    assert packed_call_id(data, 1) != ""
    assert {packed_call_id(data[:n], 1) for n in range(0, 60)} == {""}
