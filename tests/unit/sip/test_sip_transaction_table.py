"""The transaction table: matching, one deadline for all, scaling, and make_response."""

from __future__ import annotations

import pytest
from presence_b2b.sip.message import Request, Response
from presence_b2b.sip.timers import TimerQueue
from presence_b2b.sip.transaction import (
    Deliver,
    Retransmit,
    Terminated,
    TimedOut,
    TransactionTable,
    make_response,
)


def subscribe(branch: str, cseq: int = 1) -> Request:
    return Request(
        "SUBSCRIBE",
        "sip:alice@example.com",
        [
            ("Via", f"SIP/2.0/UDP 10.0.0.1:5070;branch={branch}"),
            ("From", "<sip:b2b@example.com>;tag=1"),
            ("To", "<sip:alice@example.com>"),
            ("Call-ID", f"{branch}@10.0.0.1"),
            ("CSeq", f"{cseq} SUBSCRIBE"),
        ],
    )


def reply(request: Request, status: int = 200) -> Response:
    return make_response(request, status, to_tag="srv")


def test_responses_match_by_branch_and_cseq_method() -> None:
    table = TransactionTable()
    a, _ = table.start_client(subscribe("z9hG4bKa"), 0.0)
    b, _ = table.start_client(subscribe("z9hG4bKb"), 0.0)
    ok = reply(b.request)
    assert table.receive_response(ok, 0.1) == (b, [Deliver(ok)])
    wrong_method = reply(a.request)
    wrong_method.set("CSeq", "1 NOTIFY")
    assert table.receive_response(wrong_method, 0.1) == (None, [])


def test_a_response_with_an_unknown_branch_is_stray() -> None:
    table = TransactionTable()
    table.start_client(subscribe("z9hG4bKa"), 0.0)
    assert table.receive_response(reply(subscribe("z9hG4bKzz")), 0.1) == (None, [])


def test_a_branch_in_use_cannot_start_another_transaction() -> None:
    table = TransactionTable()
    table.start_client(subscribe("z9hG4bKa"), 0.0)
    with pytest.raises(ValueError, match="already in use"):
        table.start_client(subscribe("z9hG4bKa"), 0.0)


def test_context_travels_with_the_transaction() -> None:
    table = TransactionTable()
    txn, _ = table.start_client(subscribe("z9hG4bKa"), 0.0, context="sub-42")
    found, _ = table.receive_response(reply(txn.request), 0.1)
    assert found is not None
    assert found.context == "sub-42"


def test_next_deadline_is_the_earliest_over_all_transactions() -> None:
    table = TransactionTable()
    assert table.next_deadline() is None
    table.start_client(subscribe("z9hG4bKa"), 10.0)
    table.start_client(subscribe("z9hG4bKb"), 3.0)
    assert table.next_deadline() == 3.5


def test_a_deadline_that_moved_is_not_fired_at_its_old_time() -> None:
    table = TransactionTable()
    txn, _ = table.start_client(subscribe("z9hG4bKa"), 0.0)
    table.receive_response(reply(txn.request), 0.2)  # timer E dropped, K armed at 5.2
    assert table.next_deadline() == 5.2
    assert table.on_timer(0.5) == []


def test_timer_events_come_paired_with_their_transaction() -> None:
    table = TransactionTable()
    a, _ = table.start_client(subscribe("z9hG4bKa"), 0.0)
    b, _ = table.start_client(subscribe("z9hG4bKb"), 0.25)
    events = table.on_timer(0.75)
    assert events == [(a, Retransmit(a.data)), (b, Retransmit(b.data))]


def test_terminated_transactions_leave_the_table() -> None:
    table = TransactionTable()
    a, _ = table.start_client(subscribe("z9hG4bKa"), 0.0)
    table.start_client(subscribe("z9hG4bKb"), 0.0)
    table.receive_response(reply(a.request), 1.0)
    fired = [ev for _, ev in table.on_timer(6.0)]
    assert Terminated() in fired
    assert table.client_count == 1
    fired = [ev for _, ev in table.on_timer(32.0)]
    assert fired[-2:] == [TimedOut(), Terminated()]
    assert len(table) == 0
    assert table.next_deadline() is None


def test_tens_of_thousands_of_transactions_share_one_bounded_heap() -> None:
    table = TransactionTable()
    n = 10_000
    counts = {"retransmits": 0, "timeouts": 0}

    def run(until: float) -> None:
        while (deadline := table.next_deadline()) is not None and deadline <= until:
            for _, ev in table.on_timer(deadline):
                counts["retransmits"] += isinstance(ev, Retransmit)
                counts["timeouts"] += isinstance(ev, TimedOut)
            # Stale entries are compacted away: the heap stays O(live transactions).
            assert table.queue.heap_size() <= max(1024, 2 * len(table) + 2)

    txns = [table.start_client(subscribe(f"z9hG4bK{i}"), i * 1e-6)[0] for i in range(n)]
    run(11.0)
    for txn in txns[::2]:
        table.receive_response(reply(txn.request), 11.0)
    run(100.0)
    assert len(table) == 0
    assert counts["timeouts"] == n // 2
    # Each: 4 retransmissions before 11 s (0.5, 1.5, 3.5, 7.5); unanswered ones 6 more
    # (11.5 ... 31.5) before timer F at 32 s.
    assert counts["retransmits"] == n * 4 + n // 2 * 6


def test_make_response_copies_via_from_to_call_id_and_cseq() -> None:
    req = subscribe("z9hG4bKa")
    req.headers.insert(1, ("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp, SIP/2.0/UDP x"))
    req.add("Record-Route", "<sip:proxy;lr>")
    resp = make_response(req, 200, headers=[("Expires", "600")])
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.headers == [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa"),
        ("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp, SIP/2.0/UDP x"),
        ("From", "<sip:b2b@example.com>;tag=1"),
        ("To", "<sip:alice@example.com>"),
        ("Call-ID", "z9hG4bKa@10.0.0.1"),
        ("CSeq", "1 SUBSCRIBE"),
        ("Expires", "600"),
    ]
    assert make_response(req, 200, copy_record_route=True).get("Record-Route") == "<sip:proxy;lr>"


def test_make_response_adds_the_to_tag_only_when_missing() -> None:
    req = subscribe("z9hG4bKa")
    assert make_response(req, 481, to_tag="t1").get("To") == "<sip:alice@example.com>;tag=t1"
    req.set("To", "<sip:alice@example.com>;tag=peer")
    assert make_response(req, 200, to_tag="t1").get("To") == "<sip:alice@example.com>;tag=peer"


def test_a_100_trying_gets_no_to_tag() -> None:
    req = subscribe("z9hG4bKa")
    resp = make_response(req, 100, to_tag="t1")
    assert resp.get("To") == "<sip:alice@example.com>"
    assert resp.reason == "Trying"


def test_a_shared_timer_queue_holds_transaction_deadlines_next_to_other_owners() -> None:
    class Owner:
        timer_seq = 0

    queue: TimerQueue[object] = TimerQueue()
    table = TransactionTable(queue=queue)
    other = Owner()
    queue.schedule(other, 0.2)
    txn, _ = table.start_client(subscribe("z9hG4bKshared"), 0.0)
    assert table.next_deadline() == 0.2  # the other owner's deadline comes first
    due = queue.pop_due(0.5)
    assert due == [other, txn]
    assert [type(ev) for _, ev in table.fire(txn, 0.5)] == [Retransmit]
    assert queue.next_deadline() == 1.5  # re-armed in the same queue
