"""The engine's side of the dialog store: which changes it notes for the store,
and how a stored dialog comes back (same dialog, next CSeq, no SIP until its
refresh is due), on a virtual clock."""

from __future__ import annotations

from engine_harness import PIDF_OPEN, RECORD, SUBSCRIBER, Harness
from presence_b2b.shard.persistence import record_of
from presence_b2b.shard.subscription import State
from presence_b2b.sip.headers import parse_cseq, parse_tag
from presence_b2b.sip.message import Request
from presence_b2b.store.record import CSEQ_BLOCK, Change, DialogRecord

WALL = 1_700_000_000.0
"""Unix time at the harness's engine time 1000.0 in these tests."""
TO_WALL = WALL - 1000.0


def stored(h: Harness, sub_id: int = 1) -> DialogRecord:
    usage = h.engine.usage(sub_id)
    record = record_of(usage, None, TO_WALL)
    assert record is not None
    return record


def test_without_a_journal_nothing_is_noted() -> None:
    h = Harness()
    h.established()
    assert h.engine.changes is None
    assert h.engine.take_changes() == {}


def test_a_confirmed_dialog_is_noted_as_confirmed() -> None:
    h = Harness(journal=True)
    h.established()
    changes = h.engine.take_changes()
    assert [(sid, change) for sid, (_, change) in changes.items()] == [(1, Change.CONFIRMED)]


def test_take_changes_empties_the_journal() -> None:
    h = Harness(journal=True)
    h.established()
    h.engine.take_changes()
    assert h.engine.take_changes() == {}


def test_a_notify_is_noted_as_a_routine_change() -> None:
    h = Harness(journal=True)
    first = h.established()
    h.engine.take_changes()
    h.notify(first, "active;expires=600", PIDF_OPEN)
    assert [c for _, c in h.engine.take_changes().values()] == [Change.ROUTINE]


def test_an_ended_subscription_is_noted_as_terminated() -> None:
    h = Harness(journal=True)
    h.established()
    h.engine.take_changes()
    h.unsubscribe(1)
    unsub = h.requests()[-1]
    h.answer(unsub, 200, ("Expires", "0"))
    h.notify(unsub, "terminated;reason=timeout")
    h.advance(5)
    assert 1 not in h.engine.usages
    assert [c for _, c in h.engine.take_changes().values()] == [Change.TERMINATED]


def test_the_record_holds_the_dialog_as_sent() -> None:
    h = Harness(journal=True)
    first = h.established()
    record = stored(h)
    assert record.call_id == first.get("Call-ID")
    assert record.local_tag == parse_tag(first.get("From") or "")
    assert record.remote_tag == "srv1"
    assert (record.record, record.subscriber, record.package) == (RECORD, SUBSCRIBER, "presence")
    assert record.remote_target == "sip:127.0.0.1:5090"
    assert record.local_cseq == 1
    assert record.cseq_high == 1 + CSEQ_BLOCK


def test_the_record_times_are_wall_clock() -> None:
    h = Harness(journal=True)
    h.established()
    record = stored(h)
    assert WALL < record.refresh_at < record.expires_at <= WALL + 600


def test_an_unconfirmed_subscription_has_no_record() -> None:
    h = Harness(journal=True)
    h.subscribe(1)
    assert record_of(h.engine.usage(1), None, TO_WALL) is None


def test_the_cseq_mark_keeps_half_a_block_ahead_of_the_cseqs_sent() -> None:
    h = Harness(journal=True)
    h.established()
    for _ in range(CSEQ_BLOCK):
        h.refresh(1)
        req = h.requests()[-1]
        h.answer(req, 200, ("Expires", "600"))
        usage = h.engine.usage(1)
        assert usage.dialog is not None
        assert usage.cseq_high >= usage.dialog.local_cseq + CSEQ_BLOCK // 2


def test_raising_the_cseq_mark_is_noted_as_a_route_change() -> None:
    h = Harness(journal=True)
    h.established()
    for _ in range(CSEQ_BLOCK // 2):
        h.refresh(1)
        h.answer(h.requests()[-1], 200, ("Expires", "600"))
    h.engine.take_changes()
    h.refresh(1)
    assert [c for _, c in h.engine.take_changes().values()] == [Change.ROUTE]


def _restored() -> tuple[Harness, DialogRecord]:
    """A stored dialog as a new process takes it back, due in 100 s."""
    h = Harness(journal=True)
    record = DialogRecord(
        package="presence", record=RECORD, subscriber=SUBSCRIBER, call_id="c-1@host",
        local_tag="ltag", remote_tag="rtag", local_cseq=7, route_set=(),
        remote_target="sip:127.0.0.1:5090", expires_at=0.0, refresh_at=0.0,
        last_status=None, cseq_high=7 + CSEQ_BLOCK,
    ).adopted()
    ok = h.engine.restore(5, record, h.clock.now + 100, h.clock.now + 200)
    h.pump()
    assert ok
    return h, record


def test_a_restored_dialog_sends_nothing_before_its_refresh() -> None:
    h, _ = _restored()
    h.advance(99)
    assert h.sent == []
    assert h.engine.usage(5).state is State.CONFIRMED


def test_a_restored_dialog_refreshes_in_the_same_dialog_above_the_mark() -> None:
    h, record = _restored()
    h.advance(101)
    req = h.requests()[0]  # (then its retransmissions: nobody answers here)
    assert req.get("Call-ID") == "c-1@host"
    assert parse_tag(req.get("From") or "") == "ltag"
    assert parse_tag(req.get("To") or "") == "rtag"
    assert parse_cseq(req.get("CSeq") or "").number == record.cseq_high + 1
    assert "5070" in (req.get("Contact") or "")


def test_a_restored_dialog_takes_its_notifies() -> None:
    h, _ = _restored()
    earlier = Request("SUBSCRIBE", RECORD)  # as the earlier process sent it
    earlier.add("From", f"<{SUBSCRIBER}>;tag=ltag")
    earlier.add("Call-ID", "c-1@host")
    h.notify(earlier, "active;expires=100", PIDF_OPEN, tag="rtag")
    assert h.responses()[-1].status == 200
    assert h.delivered[-1].id == 5


def test_a_481_to_the_first_refresh_after_a_restore_starts_one_new_dialog() -> None:
    h, _ = _restored()
    h.advance(100.2)
    h.answer(h.requests()[0], 481)
    initial = h.requests()[-1]
    assert len({r.get("Call-ID") for r in h.requests()}) == 2
    assert initial.get("Call-ID") != "c-1@host"
    assert parse_tag(initial.get("To") or "") is None


def test_a_record_never_confirmed_is_not_restored() -> None:
    h = Harness(journal=True)
    record = DialogRecord(
        package="presence", record=RECORD, subscriber=SUBSCRIBER, call_id="c", local_tag="l",
        remote_tag=None, local_cseq=1, route_set=(), remote_target=RECORD, expires_at=0,
        refresh_at=0, last_status=None, cseq_high=65,
    )
    assert not h.engine.restore(1, record, 1100.0, 1200.0)
    assert len(h.engine.usages) == 0


def test_abandon_forgets_a_dialog_without_sip_or_a_finished_id() -> None:
    h = Harness(journal=True)
    h.established()
    sent = len(h.sent)
    assert h.engine.abandon(1)
    h.pump()
    h.advance(1000)
    assert len(h.sent) == sent
    assert h.finished == []
    assert h.engine.take_changes() == {}
