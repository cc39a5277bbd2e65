"""Requests outside our dialogs are answered without keeping any state, and never
with much more than they brought (review of #15: memory and amplification)."""

from __future__ import annotations

from engine_harness import PIDF_OPEN, Harness, probe
from presence_b2b.shard.engine import HELD_NOTIFIES_MAX
from presence_b2b.sip.message import Request


def test_an_out_of_dialog_notify_gets_481_and_leaves_no_transaction() -> None:
    h = Harness()
    h.feed(probe("NOTIFY", ("Event", "presence"), ("Subscription-State", "active")))
    assert [r.status for r in h.responses()] == [481]
    assert len(h.engine.table) == 0


def test_options_and_unknown_methods_leave_no_transaction() -> None:
    h = Harness()
    h.feed(probe("OPTIONS"))
    h.feed(probe("MESSAGE"))
    assert [r.status for r in h.responses()] == [200, 405]
    assert len(h.engine.table) == 0


def test_a_notify_of_one_of_our_dialogs_is_answered_without_a_transaction() -> None:
    h = Harness()
    first = h.established()
    held = len(h.engine.table)  # the SUBSCRIBE's, for Timer K
    for _ in range(100):
        h.notify(first, "active", PIDF_OPEN)
    assert [r.status for r in h.responses()][-100:] == [200] * 100
    assert len(h.engine.table) == held


def test_an_answer_much_larger_than_its_request_is_not_sent() -> None:
    h = Harness()
    req = probe("OPTIONS")
    # Compact Via headers expand in the answer: 100 of them grow it by 200 bytes.
    raw = req.to_bytes().replace(
        b"\r\nFrom:",
        b"".join(
            b"\r\nv: SIP/2.0/UDP 10.0.0.%d:5060;branch=z9hG4bK%d" % (i % 250, i) for i in range(100)
        )
        + b"\r\nFrom:",
        1,
    )
    h.datagram(raw)
    assert h.responses() == []
    assert h.obs.counts["error", "unanswered"] == 1


def test_a_small_probe_is_still_answered() -> None:
    h = Harness()
    h.feed(probe("OPTIONS"))
    [answer] = h.responses()
    assert answer.status == 200


def stranger_notify(n: int = 0) -> Request:
    return probe(
        "NOTIFY", ("Event", "presence"), ("Subscription-State", "active"), via_params=f"-{n}"
    )


def test_a_loading_engine_leaves_a_notify_of_no_dialog_unanswered_until_released() -> None:
    h = Harness()
    h.engine.hold_unknown_notifies()
    h.feed(stranger_notify())
    assert h.responses() == []
    assert h.engine.release_held_notifies() == 1
    h.pump()
    assert [r.status for r in h.responses()] == [481]


def test_a_loading_engine_still_answers_the_other_requests_at_once() -> None:
    h = Harness()
    h.engine.hold_unknown_notifies()
    h.feed(probe("OPTIONS"))
    assert [r.status for r in h.responses()] == [200]
    assert h.engine.release_held_notifies() == 0


def test_a_loading_engine_holds_a_bounded_number_of_notifies_and_counts_the_rest() -> None:
    h = Harness()
    h.engine.hold_unknown_notifies()
    for n in range(HELD_NOTIFIES_MAX + 3):
        h.feed(stranger_notify(n))
    assert h.responses() == []
    assert h.obs.counts["error", "notify_not_held"] == 3
    assert h.engine.release_held_notifies() == HELD_NOTIFIES_MAX
