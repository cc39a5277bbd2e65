"""The real engine, on a real UDP socket, against SIPp presence servers on 127.0.0.1.

Each test runs the shard engine in-process on its own event loop (uvloop) with
short SIP timers and short B2B parameters, points one subscription at a SIPp UAS
scenario from tests/peers/scenarios, and checks both sides: what the engine
delivered to its consumer (Status / Failure) and what SIPp saw (its exit code,
which covers the checks the scenario makes on every SUBSCRIBE, and its message log).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from presence_b2b.presence.status import (
    Failure,
    FailureKind,
    Status,
    StatusMessage,
    SubscriptionState,
)
from presence_b2b.shard.auth import CredentialLookup
from presence_b2b.shard.engine import Engine, LocalEndpoint
from presence_b2b.shard.output import Output
from presence_b2b.shard.transport import EngineDriver, bind_udp

from presence_b2b.config import B2BParams, SipSettings
from tests.peers.fixtures import SippUasFactory
from tests.peers.sipp import SippExit, SippProcess, sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

LOOPBACK = "127.0.0.1"
SUBSCRIBER = "sip:watcher@example.com"

# Short everything, so a test that waits for a refresh, a retry or a timeout
# still takes a couple of seconds: a 4 s grant is refreshed after 2 s, errors
# retry after 1 s, the terminating NOTIFY is awaited for 1 s.
FAST_SIP = SipSettings(t1=0.1, t2=0.4, t4=0.5)
FAST_PARAMS = B2BParams(
    default_expiration=60,
    on_error_retry_time=1,
    wait_for_term_notify=1,
    min_resubscribe_time=1,
    resubscribe_delta=2,
)

T = TypeVar("T")


class RecordingSocket:
    """The driver's UDP transport, keeping a copy of every datagram it sends."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)
        self.transport.sendto(data, addr)


class LiveEngine:
    """One engine with its UDP driver on a private uvloop loop, run only while waiting.

    Datagrams that arrive while the loop is not running wait in the socket
    buffer, so a test may inspect state between waits without losing anything.
    """

    def __init__(
        self,
        params: B2BParams = FAST_PARAMS,
        sip: SipSettings = FAST_SIP,
        credentials: CredentialLookup | None = None,
    ) -> None:
        self.loop = uvloop.new_event_loop()
        sock = bind_udp(LOOPBACK, 0)  # the kernel picks a free port, no race
        self.port: int = sock.getsockname()[1]
        self.driver = EngineDriver(self.loop)
        self.transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(lambda: self.driver, sock=sock)
        )
        recording = RecordingSocket(self.transport)
        self.driver.network.udp = recording  # type: ignore[assignment]
        self.delivered: list[StatusMessage] = []
        self.finished: list[int] = []
        self.sent = recording.sent
        local = LocalEndpoint(LOOPBACK, self.port)
        self.engine = Engine(params, sip, local, clock=self.driver.clock, credentials=credentials)
        self.driver.engine = self.engine
        self.driver.consumer = self._consume

    def _consume(self, out: Output, arrived: float | None) -> None:
        self.delivered.extend(out.messages)
        self.finished.extend(out.finished)

    # -- consumer API, each followed by a flush as the driver's contract asks --

    def subscribe(self, record: str, sub_id: int = 1, subscriber: str = SUBSCRIBER) -> None:
        self.engine.subscribe(sub_id, record, subscriber)
        self.driver.flush()

    def unsubscribe(self, sub_id: int = 1) -> None:
        assert self.engine.unsubscribe(sub_id)
        self.driver.flush()

    # -- waiting ---------------------------------------------------------------

    def run_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        """Run the loop until ``cond()`` holds (checked every 10 ms) or ``timeout`` s pass."""

        async def poll() -> bool:
            deadline = self.loop.time() + timeout
            while not cond():
                if self.loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.01)
            return True

        return self.loop.run_until_complete(poll())

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def run_blocking(self, fn: Callable[[], T], timeout: float = 15.0) -> T:
        """Call a blocking ``fn`` (a SIPp client run) in a thread while the engine runs."""
        job = self.loop.run_in_executor(None, fn)
        return self.loop.run_until_complete(asyncio.wait_for(job, timeout))

    def wait_delivered(self, count: int, timeout: float = 10.0) -> list[StatusMessage]:
        """The first ``count`` messages delivered; fails the test with what came if fewer."""
        ok = self.run_until(lambda: len(self.delivered) >= count, timeout)
        assert ok, f"expected {count} deliveries within {timeout:g} s, got {self.delivered}"
        return self.delivered[:count]

    def wait_peer(self, peer: SippProcess, timeout: float = 15.0) -> int:
        """Keep the engine running until the SIPp process exits; its exit code."""
        self.run_until(lambda: not peer.running(), timeout)
        return peer.wait(0.5)

    def sent_requests(self, method: str = "SUBSCRIBE") -> list[str]:
        """Every request of ``method`` the engine put on the wire, as text."""
        prefix = method.encode() + b" "
        return [data.decode() for data in self.sent if data.startswith(prefix)]

    def close(self) -> None:
        self.driver.engine = None
        self.driver.cancel()
        self.transport.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


@pytest.fixture
def live() -> Iterator[Callable[..., LiveEngine]]:
    """Factory: ``live(**b2b_params)`` -> a running LiveEngine (closed at teardown)."""
    engines: list[LiveEngine] = []

    def make(
        sip: SipSettings = FAST_SIP, credentials: CredentialLookup | None = None, **params: Any
    ) -> LiveEngine:
        engine = LiveEngine(dataclasses.replace(FAST_PARAMS, **params), sip, credentials)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def record_at(uas: SippProcess, user: str = "presentity") -> str:
    return f"sip:{user}@{LOOPBACK}:{uas.port}"


def statuses(messages: list[StatusMessage]) -> list[Status]:
    return [m for m in messages if isinstance(m, Status)]


def failures(messages: list[StatusMessage]) -> list[Failure]:
    return [m for m in messages if isinstance(m, Failure)]


def summary(m: StatusMessage) -> tuple[str, str, str | None]:
    """(state, reason, basic) of a Status; ("failure", kind, None) of a Failure."""
    if isinstance(m, Failure):
        return ("failure", str(m.kind), None)
    basic = m.presentity.basic if m.presentity is not None else None
    return (str(m.state), m.reason, basic)


def notes(status: Status) -> list[str]:
    assert status.presentity is not None, status
    return [n.text for n in status.presentity.notes]


def header(text: str, name: str) -> str:
    for line in text.split("\r\n")[1:]:
        hname, sep, value = line.partition(":")
        if sep and hname.strip().lower() == name.lower():
            return value.strip()
    return ""


# ------------------------------------------------------------------ happy paths


def test_happy_path_delivers_open_then_closed_after_an_in_dialog_refresh(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_happy", expires=4, note="away")
    eng = live()
    eng.subscribe(record_at(uas))
    first, refreshed = eng.wait_delivered(2, timeout=8)
    assert summary(first) == ("active", "", "open")
    assert notes(first) == ["away"]  # type: ignore[arg-type]
    assert summary(refreshed) == ("active", "", "closed")
    assert notes(refreshed) == ["refreshed"]  # type: ignore[arg-type]

    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert eng.run_until(lambda: eng.finished == [1], 3)
    assert summary(eng.delivered[-1]) == ("terminated", "timeout", "closed")
    assert len(eng.delivered) == 3

    initial, refresh, unsubscribe = eng.sent_requests()
    assert header(refresh, "Call-ID") == header(initial, "Call-ID")
    assert refresh.startswith(f"SUBSCRIBE sip:presence-uas@{LOOPBACK}:{uas.port} ")
    assert ";tag=" in header(refresh, "To")
    assert header(refresh, "Expires") == "60"
    assert header(unsubscribe, "Expires") == "0"
    assert uas.count_received("SUBSCRIBE") == 3
    assert uas.count_received(200, cseq_method="NOTIFY") == 3


def test_refresh_comes_resubscribe_delta_before_the_granted_expiry(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_happy", expires=4)
    eng = live()
    eng.subscribe(record_at(uas))
    eng.wait_delivered(2, timeout=8)
    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    ok, refresh = uas.sent(200, cseq_method="SUBSCRIBE")[0], uas.received("SUBSCRIBE")[1]
    waited = (refresh.time - ok.time).total_seconds()
    assert 1.5 < waited < 3.0  # 4 s granted - resubscribe_delta 2 s


def test_notify_before_the_200_is_accepted_and_creates_the_dialog(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_notify_before_200", note="early")
    eng = live()
    eng.subscribe(record_at(uas))
    [first] = eng.wait_delivered(1)
    assert summary(first) == ("active", "", "open")
    assert notes(first) == ["early"]  # type: ignore[arg-type]
    assert eng.run_until(lambda: eng.engine.snapshot(1)["state"] == "confirmed", 3)  # type: ignore[index]

    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert eng.run_until(lambda: eng.finished == [1], 3)
    assert [summary(m) for m in eng.delivered] == [
        ("active", "", "open"),
        ("terminated", "timeout", "closed"),
    ]
    assert uas.count_received(200, cseq_method="NOTIFY") == 2


def test_retransmitted_notify_gives_one_status_and_two_200s(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_notify_retransmit")
    eng = live()
    eng.subscribe(record_at(uas))
    eng.wait_delivered(1)
    assert eng.run_until(lambda: uas.count_received(200, cseq_method="NOTIFY") >= 2, 5)
    eng.run_for(0.2)  # a second status would have been delivered by now
    assert [summary(m) for m in eng.delivered] == [("active", "", "open")]

    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert eng.run_until(lambda: eng.finished == [1], 3)
    assert [m.state for m in statuses(eng.delivered)] == [
        SubscriptionState.ACTIVE,
        SubscriptionState.TERMINATED,
    ]
    first, copy, _ = uas.received(200, cseq_method="NOTIFY")
    assert first.text == copy.text


# ------------------------------------------------------------------ error responses


def test_481_to_a_refresh_starts_a_new_dialog_at_once(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_481_on_refresh", expires=4)
    eng = live()
    eng.subscribe(record_at(uas))
    eng.wait_delivered(2, timeout=8)
    assert [summary(m) for m in eng.delivered] == [("active", "", "open")] * 2  # no Failure

    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert eng.run_until(lambda: eng.finished == [1], 3)
    assert summary(eng.delivered[-1]) == ("terminated", "timeout", "closed")

    rejected = uas.sent(481)[0]
    fresh = uas.received("SUBSCRIBE")[2]
    assert ";tag=" not in fresh.header("To")
    assert fresh.call_id != rejected.call_id
    assert (fresh.time - rejected.time).total_seconds() < 0.5


def test_423_is_answered_by_a_new_subscribe_asking_for_min_expires(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_423", min_expires=120, note="patient")
    eng = live()
    eng.subscribe(record_at(uas))
    [first] = eng.wait_delivered(1)
    assert summary(first) == ("active", "", "open")
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK  # it checks Expires >= 120 itself

    asked = [header(r, "Expires") for r in eng.sent_requests()]
    assert asked == ["60", "120"]
    assert uas.sent(200, cseq_method="SUBSCRIBE")[0].header("Expires") == "120"
    assert eng.engine.snapshot(1)["expires"] == 120  # type: ignore[index]


def test_302_sends_a_new_subscribe_to_the_contact(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    target = sipp_uas("uas_basic", note="moved here")
    redirect = sipp_uas("uas_302", redirect_port=target.port, redirect_user="other")
    eng = live()
    eng.subscribe(record_at(redirect))
    [first] = eng.wait_delivered(1)
    assert summary(first) == ("active", "", "open")
    assert notes(first) == ["moved here"]  # type: ignore[arg-type]

    eng.unsubscribe()
    assert eng.wait_peer(target) == SippExit.ALL_CALLS_OK
    assert eng.wait_peer(redirect) == SippExit.ALL_CALLS_OK
    assert eng.run_until(lambda: eng.finished == [1], 3)
    moved = target.received("SUBSCRIBE")[0]
    assert moved.first_line.startswith(f"SUBSCRIBE sip:other@{LOOPBACK}:{target.port} ")
    assert moved.call_id != redirect.received("SUBSCRIBE")[0].call_id


def test_no_answer_at_all_retransmits_then_fails_with_a_timeout_and_a_retry(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_silent", hold_ms=6000)
    fast_f = SipSettings(t1=0.05, t2=0.4, t4=0.5)  # Timer F = 64 * T1 = 3.2 s
    eng = live(sip=fast_f, on_error_retry_time=30)
    eng.subscribe(record_at(uas))
    [failure] = eng.wait_delivered(1, timeout=6)
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.code, failure.retry_in) == (FailureKind.TIMEOUT, 408, 30.0)

    copies = eng.sent_requests()
    assert len(copies) >= 8  # 0, 50, 150, 350, 750 ms, then every T2 = 400 ms to 3.2 s
    assert len({header(c, "Via") for c in copies}) == 1  # the same transaction throughout
    assert eng.run_until(lambda: uas.count_received("SUBSCRIBE") == len(copies), 1)
    assert eng.engine.snapshot(1)["state"] == "waiting"  # type: ignore[index]


# ------------------------------------------------------------------ terminated by the notifier


def _terminated_by(
    live: Callable[..., LiveEngine],
    sipp_uas: SippUasFactory,
    reason: str,
    retry_after: int | None,
    calls: int,
) -> tuple[LiveEngine, SippProcess]:
    uas = sipp_uas(
        "uas_terminated",
        calls=calls,
        reason=reason,
        retry_after="none" if retry_after is None else retry_after,
    )
    eng = live(on_error_retry_time=5)
    eng.subscribe(record_at(uas))
    eng.wait_delivered(2)
    return eng, uas


@pytest.mark.parametrize("reason", ["deactivated", "timeout"])
def test_terminated_deactivated_or_timeout_resubscribes_at_once(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory, reason: str
) -> None:
    eng, uas = _terminated_by(live, sipp_uas, reason, None, calls=2)
    assert eng.run_until(lambda: len(eng.delivered) >= 3, 3)
    assert [summary(m) for m in eng.delivered[:3]] == [
        ("active", "", "open"),
        ("terminated", reason, "closed"),
        ("active", "", "open"),
    ]
    terminated = uas.sent("NOTIFY")[1]
    fresh = uas.received("SUBSCRIBE")[1]
    assert fresh.call_id != terminated.call_id
    assert (fresh.time - terminated.time).total_seconds() < 0.5
    # The second dialog ends the same way; a second at-once retry within
    # on_error_retry_time would loop, so this time it waits.
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    [failure] = failures(eng.wait_delivered(5))
    assert (failure.kind, failure.retry_in) == (FailureKind.TERMINATED, 5.0)


@pytest.mark.parametrize("reason", ["probation", "giveup"])
def test_terminated_probation_or_giveup_retries_after_retry_after(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory, reason: str
) -> None:
    eng, uas = _terminated_by(live, sipp_uas, reason, 1, calls=2)
    failure = eng.wait_delivered(3)[2]
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.detail, failure.retry_in) == (FailureKind.TERMINATED, reason, 1.0)
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK  # the retry became SIPp's call 2
    terminated = uas.sent("NOTIFY")[1]
    retry = uas.received("SUBSCRIBE")[1]
    assert retry.call_id != terminated.call_id
    assert 0.8 < (retry.time - terminated.time).total_seconds() < 1.6


@pytest.mark.parametrize("reason", ["rejected", "noresource", "invariant"])
def test_terminated_rejected_noresource_or_invariant_is_final(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory, reason: str
) -> None:
    eng, uas = _terminated_by(live, sipp_uas, reason, None, calls=1)
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    failure = eng.wait_delivered(3)[2]
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.detail, failure.retry_in) == (
        FailureKind.TERMINATED,
        reason,
        None,
    )
    assert summary(eng.delivered[1]) == ("terminated", reason, "closed")
    assert eng.finished == [1]
    eng.run_for(1.2)  # longer than any retry the engine could have scheduled
    assert len(eng.sent_requests()) == 1
    assert len(eng.delivered) == 3


# ------------------------------------------------------------------ unsubscribe


def test_unsubscribe_ends_with_the_terminating_notify(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_basic")
    eng = live(wait_for_term_notify=30)
    eng.subscribe(record_at(uas))
    eng.wait_delivered(1)
    eng.unsubscribe()
    assert eng.run_until(lambda: eng.finished == [1], 3)  # long before the 30 s wait
    assert summary(eng.delivered[-1]) == ("terminated", "timeout", "closed")
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert uas.count_received(200, cseq_method="NOTIFY") == 2


def test_unsubscribe_without_a_terminating_notify_ends_after_wait_for_term_notify(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_unsub_no_term_notify")
    eng = live(wait_for_term_notify=1)
    eng.subscribe(record_at(uas))
    eng.wait_delivered(1)
    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert not eng.finished
    assert eng.run_until(lambda: eng.finished == [1], 2)
    last = eng.delivered[-1]
    assert isinstance(last, Status)
    assert (last.state, last.reason) == (SubscriptionState.TERMINATED, "unsubscribed")
    assert len(eng.delivered) == 2


# ------------------------------------------------------------------ RFC rules on the wire

RULES_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "uas_notify_rules.xml"


def test_lower_cseq_foreign_event_id_and_options_get_the_rfc_answers(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas(str(RULES_SCENARIO), expires=60, note="online")
    eng = live()
    eng.subscribe(record_at(uas))
    [first] = eng.wait_delivered(1, timeout=8)
    assert summary(first) == ("active", "", "open")
    # SIPp checks the 500, the 481 and the OPTIONS 200's headers itself.
    assert eng.run_until(lambda: uas.count_received(200, cseq_method="OPTIONS") == 1, 8)
    assert len(eng.delivered) == 1  # neither rejected NOTIFY became a status
    eng.unsubscribe()
    assert eng.wait_peer(uas) == SippExit.ALL_CALLS_OK
    assert uas.count_received(500, cseq_method="NOTIFY") == 1
    assert uas.count_received(481, cseq_method="NOTIFY") == 1
