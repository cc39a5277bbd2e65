"""Nothing escapes the engine, and its output is all a driver needs."""

from __future__ import annotations

import socket

import pytest
from engine_harness import RECORD, SERVER, Harness, at
from presence_b2b.presence.status import Failure, FailureKind
from presence_b2b.shard.destination import Destination, Transport
from presence_b2b.shard.requester import Requester
from presence_b2b.shard.subscription import Action, NotifyInfo, State, UnexpectedEvent
from presence_b2b.shard.transport import unusable
from presence_b2b.shard.usage import Usage
from presence_b2b.sip.dialog import Dialog
from presence_b2b.sip.message import Request
from presence_b2b.sip.transaction import ClientTransaction

from presence_b2b.compiled import is_compiled


def test_each_input_leaves_its_output_for_the_driver_to_take_once() -> None:
    h = Harness()
    h.engine.subscribe(1, RECORD, "sip:bob@example.com")
    out = h.engine.take()
    [(data, dest, txn)] = out.datagrams
    assert data.startswith(b"SUBSCRIBE ") and dest == at(*SERVER)
    assert isinstance(txn, ClientTransaction)
    assert out.deadline == h.clock.now + 0.5  # Timer E
    assert not h.engine.take()


def test_a_finished_subscription_comes_out_after_its_last_message() -> None:
    h = Harness()
    h.established()
    h.unsubscribe(1)
    h.answer(h.requests()[-1], 200)
    h.advance(31)
    assert h.finished == [1]
    assert h.delivered[-1].id == 1


@pytest.mark.parametrize(
    ("record", "why"),
    [("sip:alice@presence.example.com", "resolver"), ("sip:alice@[::1]:5090", "IPv4")],
)
def test_a_destination_the_driver_cannot_use_is_a_transport_failure_with_retry(
    record: str, why: str
) -> None:
    h = Harness()
    h.refuse = lambda dest: unusable(dest, socket.AF_INET)
    h.subscribe(1, record)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TRANSPORT
    assert why in failure.detail and failure.retry_in is not None
    assert h.engine.usage(1).deadline is not None


def test_a_send_error_in_a_refresh_touches_only_that_subscription() -> None:
    h = Harness()
    h.established(1)
    h.established(2)
    delivered = len(h.delivered)
    h.refuse = lambda dest: "ValueError: boom" if dest == at(*SERVER) else ""
    h.refresh(1)
    # RFC 6665 4.1.2.2: the dialog lives until its expiry; the refresh is retried in it.
    assert h.delivered[delivered:] == []
    assert h.engine.usage(1).snapshot()["refresh_failed"]
    assert h.engine.usage(1).state is State.CONFIRMED
    assert h.engine.usage(2).state is State.CONFIRMED


class _TimeoutBug(Usage):
    __slots__ = ()

    def on_timeout(self, now: float, txn: int | None = None) -> list[Action]:
        raise RuntimeError("bug")


class _NoNotifyRow(Usage):
    __slots__ = ()

    def on_notify(self, n: NotifyInfo, now: float) -> tuple[int, list[Action]]:
        raise UnexpectedEvent(self.state, "notify")


class _BrokenRequester(Requester):
    __slots__ = ()

    def initial(
        self, record: str, subscriber: str, target: str | None, expires: int
    ) -> tuple[Request, Dialog, Destination, tuple[str, str]]:
        raise KeyError("bug")


@pytest.mark.skipif(
    is_compiled(),
    reason="compiled, the engine takes only a Usage itself, so no faulty subclass can be "
    "planted; the same guard is tested in the pure run",
)
def test_an_exception_in_a_timer_event_fails_that_subscription_and_the_batch_goes_on() -> None:
    h = Harness()
    h.subscribe(1)
    h.subscribe(2, "sip:carol@127.0.0.1:5090")
    h.engine.usage(1).__class__ = _TimeoutBug
    h.advance(40)  # both Timer Fs fall due in one batch
    kinds = {(m.id, getattr(m, "kind", None)) for m in h.delivered}
    assert (1, FailureKind.INTERNAL) in kinds
    assert (2, FailureKind.TIMEOUT) in kinds
    assert h.obs.counts["error", "internal"] == 1


@pytest.mark.skipif(
    is_compiled(),
    reason="compiled, the engine takes only a Usage itself, so no faulty subclass can be "
    "planted; the same guard is tested in the pure run",
)
def test_an_unexpected_event_from_the_machine_is_an_internal_failure() -> None:
    h = Harness()
    first = h.established()
    usage = h.engine.usage(1)
    usage.__class__ = _NoNotifyRow
    h.notify(first, "active;expires=600")
    assert h.responses()[-1].status == 500
    failure = h.delivered[-1]
    assert isinstance(failure, Failure) and failure.kind is FailureKind.INTERNAL
    assert usage.deadline is not None


@pytest.mark.skipif(
    is_compiled(),
    reason="compiled, the requester is a native class whose class cannot be swapped for a "
    "faulty one; the same guard is tested in the pure run",
)
def test_an_exception_while_building_a_request_is_an_internal_failure_not_a_stall() -> None:
    h = Harness()
    h.engine.requester.__class__ = _BrokenRequester
    h.subscribe(1)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.INTERNAL
    assert h.engine.usage(1).deadline is not None


def test_the_driver_refuses_names_other_families_and_other_transports() -> None:
    assert unusable(Destination(Transport.UDP, "127.0.0.1", 5060), socket.AF_INET) == ""
    assert unusable(Destination(Transport.UDP, "::1", 5060), socket.AF_INET6) == ""
    assert "resolver" in unusable(Destination(Transport.UDP, "a.example", 5060), socket.AF_INET)
    assert "IPv4" in unusable(Destination(Transport.UDP, "::1", 5060), socket.AF_INET)
    assert "TCP" in unusable(Destination(Transport.TCP, "127.0.0.1", 5060), socket.AF_INET)
