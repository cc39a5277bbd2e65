"""Non-INVITE client transaction on a fake clock (RFC 3261 §17.1.2)."""

from __future__ import annotations

import pytest
from presence_b2b.sip.message import Request, Response
from presence_b2b.sip.transaction import (
    ClientTransaction,
    Deliver,
    Event,
    Retransmit,
    Send,
    Terminated,
    TimedOut,
    TimerSettings,
    TransactionState,
    TransportError,
)


def subscribe(branch: str = "z9hG4bKc1") -> Request:
    return Request(
        "SUBSCRIBE",
        "sip:alice@example.com",
        [
            ("Via", f"SIP/2.0/UDP 10.0.0.1:5070;branch={branch}"),
            ("From", "<sip:b2b@example.com>;tag=1"),
            ("To", "<sip:alice@example.com>"),
            ("Call-ID", "c1@10.0.0.1"),
            ("CSeq", "1 SUBSCRIBE"),
        ],
    )


def response(status: int) -> Response:
    return Response(status, "X", [("Via", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKc1")])


def run_until(txn: ClientTransaction, end: float) -> list[tuple[float, Event]]:
    """Fire the transaction's timers in deadline order up to `end`."""
    seen: list[tuple[float, Event]] = []
    while (deadline := txn.next_deadline()) is not None and deadline <= end:
        seen.extend((deadline, ev) for ev in txn.on_timer(deadline))
    return seen


def retransmit_times(seen: list[tuple[float, Event]]) -> list[float]:
    return [t for t, ev in seen if isinstance(ev, Retransmit)]


def test_start_sends_the_request_once() -> None:
    txn = ClientTransaction(subscribe())
    assert txn.start(0.0) == [Send(subscribe().to_bytes())]
    assert txn.state is TransactionState.TRYING
    with pytest.raises(RuntimeError):
        txn.start(0.0)


def test_timer_e_doubles_up_to_t2() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    times = retransmit_times(run_until(txn, 20.0))
    # Intervals 0.5, 1, 2, 4, 4, 4...
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]


def test_timer_e_fires_every_t2_in_proceeding() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    txn.receive(response(100), 0.1)
    assert txn.state is TransactionState.PROCEEDING
    assert retransmit_times(run_until(txn, 12.0)) == [0.5, 4.5, 8.5]


def test_retransmissions_carry_the_original_bytes() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    assert txn.on_timer(0.5) == [Retransmit(subscribe().to_bytes())]


def test_timer_f_times_out_after_64_t1() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    seen = run_until(txn, 100.0)
    assert seen[-2:] == [(32.0, TimedOut()), (32.0, Terminated())]
    assert max(retransmit_times(seen)) < 32.0
    assert txn.state is TransactionState.TERMINATED
    assert txn.next_deadline() is None


def test_a_late_timer_call_fires_timer_f_before_timer_e() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    assert txn.on_timer(40.0) == [TimedOut(), Terminated()]


def test_a_timer_call_before_any_deadline_does_nothing() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    assert txn.on_timer(0.4) == []
    assert txn.next_deadline() == 0.5


def test_provisional_responses_are_delivered_each_time() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    r = response(180)
    assert txn.receive(r, 0.1) == [Deliver(r)]
    assert txn.receive(r, 0.2) == [Deliver(r)]


def test_final_response_is_delivered_once_and_its_retransmissions_are_absorbed() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    ok = response(200)
    assert txn.receive(ok, 0.2) == [Deliver(ok)]
    assert txn.state is TransactionState.COMPLETED
    assert txn.last_response is ok
    assert txn.receive(ok, 0.3) == []
    assert txn.receive(response(180), 0.3) == []


def test_no_retransmission_after_a_final_response() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    txn.receive(response(404), 0.2)
    assert retransmit_times(run_until(txn, 40.0)) == []


def test_timer_k_terminates_t4_after_the_final_response() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    txn.receive(response(200), 1.0)
    assert txn.next_deadline() == 6.0
    assert txn.on_timer(5.9) == []
    assert txn.on_timer(6.0) == [Terminated()]
    assert txn.state is TransactionState.TERMINATED


def test_timer_settings_are_configurable() -> None:
    txn = ClientTransaction(subscribe(), timers=TimerSettings(t1=0.1, t2=0.3, t4=1.0))
    txn.start(0.0)
    seen = run_until(txn, 100.0)
    assert retransmit_times(seen)[:4] == pytest.approx([0.1, 0.3, 0.6, 0.9])
    assert seen[-1][0] == pytest.approx(6.4)
    assert isinstance(seen[-1][1], Terminated)


def test_timer_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="T1"):
        TimerSettings(t1=5.0, t2=4.0)


def test_reliable_transport_has_no_retransmissions_and_ends_on_the_final_response() -> None:
    txn = ClientTransaction(subscribe(), reliable=True)
    txn.start(0.0)
    assert txn.next_deadline() == 32.0
    ok = response(200)
    assert txn.receive(ok, 1.0) == [Deliver(ok), Terminated()]
    assert txn.next_deadline() is None


def test_transport_error_ends_the_transaction() -> None:
    txn = ClientTransaction(subscribe())
    txn.start(0.0)
    assert txn.on_transport_error(0.1) == [TransportError(), Terminated()]
    assert txn.on_transport_error(0.2) == []
    assert txn.on_timer(50.0) == []


def test_a_request_without_branch_cannot_start_a_transaction() -> None:
    req = subscribe()
    req.set("Via", "SIP/2.0/UDP 10.0.0.1:5070")
    with pytest.raises(ValueError, match="branch"):
        ClientTransaction(req)
