"""Non-INVITE server transactions for NOTIFY (RFC 3261 §17.2.2, §17.2.3)."""

from __future__ import annotations

import pytest
from presence_b2b.sip.message import Request, parse_message
from presence_b2b.sip.transaction import (
    DeliverRequest,
    Retransmit,
    Send,
    ServerTransaction,
    Terminated,
    TimerSettings,
    TransactionState,
    TransactionTable,
    make_response,
)
from sip_samples import notify_bytes


def notify(branch: str = "z9hG4bK776asdhds", cseq: int = 2) -> Request:
    msg = parse_message(notify_bytes(branch=branch, cseq=cseq))
    assert isinstance(msg, Request)
    return msg


def test_a_new_notify_is_delivered_to_the_transaction_user() -> None:
    table = TransactionTable()
    req = notify()
    txn, events = table.receive_request(req, 0.0)
    assert events == [DeliverRequest(req)]
    assert txn.state is TransactionState.TRYING


def test_retransmitted_notify_gets_the_same_response_and_is_not_delivered_twice() -> None:
    table = TransactionTable()
    txn, _ = table.receive_request(notify(), 0.0)
    ok = make_response(txn.request, 200, to_tag=None)
    [sent] = table.respond(txn, ok, 0.01)
    assert isinstance(sent, Send)
    again, events = table.receive_request(notify(), 0.5)
    assert again is txn
    assert events == [Retransmit(sent.data)]


def test_a_retransmission_before_the_response_is_absorbed_silently() -> None:
    table = TransactionTable()
    table.receive_request(notify(), 0.0)
    _, events = table.receive_request(notify(), 0.5)
    assert events == []


def test_a_retransmission_after_a_provisional_response_repeats_it() -> None:
    table = TransactionTable()
    txn, _ = table.receive_request(notify(), 0.0)
    [sent] = table.respond(txn, make_response(txn.request, 100), 0.0)
    assert isinstance(sent, Send)
    assert txn.state is TransactionState.PROCEEDING
    assert table.receive_request(notify(), 0.5)[1] == [Retransmit(sent.data)]


def test_timer_j_ends_the_transaction_64_t1_after_the_final_response() -> None:
    table = TransactionTable()
    txn, _ = table.receive_request(notify(), 0.0)
    table.respond(txn, make_response(txn.request, 200), 1.0)
    assert table.next_deadline() == 33.0
    assert table.on_timer(32.9) == []
    assert table.on_timer(33.0) == [(txn, Terminated())]
    assert len(table) == 0


def test_after_timer_j_the_same_request_is_new_again() -> None:
    table = TransactionTable(TimerSettings(t1=0.01))
    txn, _ = table.receive_request(notify(), 0.0)
    table.respond(txn, make_response(txn.request, 200), 0.0)
    table.on_timer(1.0)
    again, events = table.receive_request(notify(), 1.0)
    assert again is not txn
    assert events == [DeliverRequest(again.request)]


def test_a_different_branch_is_a_different_transaction() -> None:
    table = TransactionTable()
    first, _ = table.receive_request(notify(branch="z9hG4bKa"), 0.0)
    second, events = table.receive_request(notify(branch="z9hG4bKb", cseq=3), 0.0)
    assert second is not first
    assert isinstance(events[0], DeliverRequest)


def test_the_same_branch_from_another_sent_by_is_a_different_transaction() -> None:
    table = TransactionTable()
    req = notify()
    other = notify()
    other.set("Via", "SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bK776asdhds")
    first, _ = table.receive_request(req, 0.0)
    second, _ = table.receive_request(other, 0.0)
    assert first is not second


def test_rfc2543_requests_without_magic_cookie_match_by_call_id_from_tag_and_cseq() -> None:
    table = TransactionTable()
    txn, _ = table.receive_request(notify(branch="old1"), 0.0)
    [sent] = table.respond(txn, make_response(txn.request, 200), 0.0)
    assert isinstance(sent, Send)
    # A retransmission from an RFC 2543 peer need not repeat its branch.
    retrans = notify(branch="old2")
    assert table.receive_request(retrans, 0.2) == (txn, [Retransmit(sent.data)])
    newer, events = table.receive_request(notify(branch="old1", cseq=3), 0.3)
    assert newer is not txn
    assert events == [DeliverRequest(newer.request)]


def test_a_second_final_response_is_refused() -> None:
    txn = ServerTransaction(notify())
    txn.respond(make_response(txn.request, 200), 0.0)
    with pytest.raises(RuntimeError):
        txn.respond(make_response(txn.request, 500), 0.0)


def test_reliable_transport_ends_the_transaction_with_the_final_response() -> None:
    txn = ServerTransaction(notify(), reliable=True)
    events = txn.respond(make_response(txn.request, 200), 0.0)
    assert isinstance(events[0], Send)
    assert events[1:] == [Terminated()]
