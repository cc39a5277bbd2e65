"""The scrape of the running service tells what the SIP traffic did.

The real ``presence-b2b serve`` (tests/e2e/ops_service.py) is driven through
the QSA client library against SIPp presence servers on 127.0.0.1, and
``/metrics`` is scraped before and after. Each test checks one figure against
what the peers did: N NOTIFYs sent by SIPp are N NOTIFYs counted, a 423 is a
423 and a retry, a silent server is a transaction timeout and a retry timer,
a ``kill -9`` of a shard is one restart. Shards publish their counts every
0.5 s, so every check scrapes until the figure matches or a generous timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from presence_b2b.ipc.client import BlockingQsaClient
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState

from tests.e2e.ops_service import OpsService, Scrape
from tests.e2e.service import wait_for as wait_until
from tests.peers.sipp import SippProcess, sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

N = 6
"""Subscriptions in the load run: enough to land on both shards."""


@dataclass
class Run:
    """A service after some traffic, and its scrape from before the traffic."""

    service: OpsService
    before: Scrape
    sipp: SippProcess | None = None

    @property
    def peer(self) -> SippProcess:
        assert self.sipp is not None, "this run has no SIP peer"
        return self.sipp

    def expect_rise(self, name: str, by: float, **labels: str) -> Scrape:
        """Scrape until ``presence_b2b_<name>`` (summed over ``labels``) rose by ``by``."""
        start = self.before.total(name, **labels)
        what = f"rise of presence_b2b_{name}{labels or ''}"
        return self.service.wait_figure(
            what, lambda scrape: scrape.total(name, **labels) - start, by
        )


def record(peer: SippProcess, user: str) -> str:
    return f"sip:{user}@127.0.0.1:{peer.port}"


def statuses(client: BlockingQsaClient, count: int, timeout: float = 20.0) -> list[Status]:
    """The next ``count`` statuses the client gets (errors are skipped)."""
    got: list[Status] = []

    def more() -> bool:
        event = client.get(timeout=0.5)
        if event is not None and isinstance(event.message, Status):
            got.append(event.message)
        return len(got) >= count

    wait_until(f"{count} statuses at the client", more, timeout)
    return got


def first_failure(client: BlockingQsaClient, timeout: float = 20.0) -> Failure:
    def probe() -> Failure | None:
        event = client.get(timeout=0.5)
        return event.message if event and isinstance(event.message, Failure) else None

    return wait_until("a failure at the client", probe, timeout)


@pytest.fixture(scope="module")
def load() -> Iterator[Run]:
    """N subscriptions through the client library; SIPp (uas_basic) sends one NOTIFY each."""
    service = OpsService(shards=2, config={"presence_b2b": {"default_expiration": 60}})
    peer = SippProcess("uas_basic", role="uas", calls=N, keys={"expires": 60})
    client: BlockingQsaClient | None = None
    try:
        peer.start()
        service.start()
        before = service.scrape()
        client = BlockingQsaClient(service.control_socket, name="metrics-e2e")
        for i in range(N):
            client.subscribe(record(peer, f"user{i}"), f"sip:watcher{i}@example.com")
        got = statuses(client, N)
        assert {s.state for s in got} == {SubscriptionState.ACTIVE}, got
        yield Run(service, before, peer)
    finally:
        if client is not None:
            client.close()
        service.close()
        peer.cleanup()


def test_each_notify_sent_by_the_presence_server_is_counted_once_by_state(load: Run) -> None:
    load.expect_rise("sip_notify_received_total", N, state="active")
    # SIPp's log holds its retransmissions too; the counter excludes them.
    sent = {(m.call_id, m.header("CSeq")) for m in load.peer.sent("NOTIFY")}
    assert len(sent) == N


def test_each_new_subscription_sends_exactly_one_initial_subscribe(load: Run) -> None:
    load.expect_rise("sip_requests_sent_total", N, method="SUBSCRIBE", kind="initial")


def test_established_subscriptions_show_in_the_confirmed_gauge(load: Run) -> None:
    scrape = load.service.wait_figure(
        "presence_b2b_subscriptions{state=confirmed}",
        lambda s: s.total("subscriptions", state="confirmed"),
        N,
    )
    assert scrape.total("subscriptions_established_total") == N


def test_every_status_written_to_a_client_ring_is_counted(load: Run) -> None:
    load.expect_rise("qsa_status_sent_total", N)


def test_status_delivery_latency_is_observed_for_every_notify(load: Run) -> None:
    load.expect_rise("notify_to_client_seconds_count", N)


def test_promtool_finds_nothing_to_say_about_the_live_scrape(load: Run) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    text = load.service.scrape_text()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


# ---------------------------------------------------------------------- a client stops reading

RING = 4096
"""The smallest status ring the configuration allows."""
STALLED = 12
"""Statuses sent to a client that stopped reading: about four times what the ring holds."""


@pytest.fixture(scope="module")
def stalled_client() -> Iterator[Run]:
    """A client that takes one status and then reads no more; its status ring fills.

    Each NOTIFY carries a 300-byte note, so a status record is about 1 KB (below
    the 2 KiB largest record of a 4 KiB ring) and three or four fill the ring.
    """
    service = OpsService(
        shards=1,
        config={
            "presence_b2b": {"default_expiration": 60},
            "server": {"status_ring_bytes": RING},
        },
    )
    peer = SippProcess(
        "uas_basic", role="uas", calls=1 + STALLED, keys={"expires": 60, "note": "n" * 300}
    )
    client: BlockingQsaClient | None = None
    try:
        peer.start()
        service.start()
        client = BlockingQsaClient(service.control_socket, name="metrics-e2e-stalled")
        # The client stops draining its rings once this many events wait for the caller
        # (and nobody here calls get()): after the first status it reads nothing more.
        client.client.max_pending_events = 1
        client.subscribe(record(peer, "first"), "sip:watcher@example.com")
        service.wait_figure(
            "the first status written and read by the client",
            lambda s: float(
                s.total("qsa_status_sent_total") == 1
                and s.total("qsa_ring_depth_bytes", direction="status") == 0
            ),
            1.0,
        )
        before = service.scrape()
        for i in range(STALLED):
            client.subscribe(record(peer, f"busy{i}"), f"sip:watcher{i}@example.com")
        run = Run(service, before, peer)
        run.expect_rise("sip_notify_received_total", STALLED, state="active")
        yield run
    finally:
        if client is not None:
            client.close()
        service.close()
        peer.cleanup()


def test_a_status_that_finds_the_ring_full_is_counted_as_an_overflow(
    stalled_client: Run,
) -> None:
    # Every status is either written at once or waits for room, counted as an overflow;
    # the client never makes room, so none of the waiting ones is written later.
    run = stalled_client
    sent_before = run.before.total("qsa_status_sent_total")
    scrape = run.service.wait_figure(
        "statuses written plus statuses waiting for room",
        lambda s: (
            s.total("qsa_status_sent_total")
            - sent_before
            + s.total("errors_total", kind="ring_overflow")
        ),
        STALLED,
    )
    assert scrape.total("errors_total", kind="ring_overflow") > 0


def test_the_high_water_of_a_filled_status_ring_is_close_to_its_size(
    stalled_client: Run,
) -> None:
    scrape = stalled_client.service.wait_figure(
        "presence_b2b_qsa_ring_high_water_bytes{direction=status} above half the ring",
        lambda s: float(s.total("qsa_ring_high_water_bytes", direction="status") > RING / 2),
        1.0,
    )
    assert scrape.total("qsa_ring_high_water_bytes", direction="status") <= RING


def test_bytes_left_unread_in_a_status_ring_show_as_its_depth(stalled_client: Run) -> None:
    stalled_client.service.wait_figure(
        "presence_b2b_qsa_ring_depth_bytes{direction=status} above half the ring",
        lambda s: float(s.total("qsa_ring_depth_bytes", direction="status") > RING / 2),
        1.0,
    )


# ---------------------------------------------------------------------- 423


@pytest.fixture(scope="module")
def interval_too_brief() -> Iterator[Run]:
    """One subscription asking for 60 s from a server that wants at least 120 s (uas_423)."""
    service = OpsService(shards=1, config={"presence_b2b": {"default_expiration": 60}})
    peer = SippProcess("uas_423", role="uas", keys={"min_expires": 120})
    client: BlockingQsaClient | None = None
    try:
        peer.start()
        service.start()
        before = service.scrape()
        client = BlockingQsaClient(service.control_socket, name="metrics-e2e-423")
        client.subscribe(record(peer, "brief"), "sip:watcher@example.com")
        assert statuses(client, 1)[0].state is SubscriptionState.ACTIVE
        yield Run(service, before, peer)
    finally:
        if client is not None:
            client.close()
        service.close()
        peer.cleanup()


def test_a_423_response_is_counted_by_its_code_and_class(interval_too_brief: Run) -> None:
    interval_too_brief.expect_rise("sip_responses_received_by_code_total", 1, code="423")
    interval_too_brief.expect_rise("sip_responses_received_total", 1, **{"class": "4xx"})


def test_a_423_is_followed_by_a_second_initial_subscribe(interval_too_brief: Run) -> None:
    interval_too_brief.expect_rise("sip_requests_sent_total", 2, method="SUBSCRIBE", kind="initial")
    assert interval_too_brief.peer.count_received("SUBSCRIBE") == 2


# ---------------------------------------------------------------------- no answer


@pytest.fixture(scope="module")
def no_answer() -> Iterator[Run]:
    """One subscription to a server that never answers (uas_silent): 64*T1 = 6.4 s."""
    service = OpsService(shards=1, config={"presence_b2b": {"on_error_retry_time": 1}})
    peer = SippProcess("uas_silent", role="uas", keys={"hold_ms": 60_000})
    client: BlockingQsaClient | None = None
    try:
        peer.start()
        service.start()
        before = service.scrape()
        client = BlockingQsaClient(service.control_socket, name="metrics-e2e-silent")
        client.subscribe(record(peer, "silent"), "sip:watcher@example.com")
        failure = first_failure(client)
        assert failure.kind is FailureKind.TIMEOUT and failure.retry_in, failure
        yield Run(service, before, peer)
    finally:
        if client is not None:
            client.close()
        service.close()
        peer.cleanup()


def test_a_subscribe_nobody_answers_is_counted_as_a_transaction_timeout(
    no_answer: Run,
) -> None:
    no_answer.expect_rise("sip_transaction_timeouts_total", 1)
    no_answer.expect_rise("subscriptions_failed_total", 1, kind="timeout")


def test_after_a_timeout_the_retry_timer_fires(no_answer: Run) -> None:
    no_answer.expect_rise("timers_armed_total", 1, kind="retry")
    no_answer.service.wait_figure(
        "rise of presence_b2b_timers_fired_total{kind=retry} to at least 1",
        lambda s: float(
            s.total("timers_fired_total", kind="retry")
            - no_answer.before.total("timers_fired_total", kind="retry")
            >= 1
        ),
        1.0,
    )


def test_an_unanswered_subscribe_is_retransmitted_and_counted(no_answer: Run) -> None:
    scrape = no_answer.service.scrape()
    resent = scrape.total("sip_requests_sent_total", kind="retransmission")
    assert resent > 0
    assert scrape.total("sip_retransmissions_total", direction="sent") == resent


# ---------------------------------------------------------------------- kill -9


@pytest.fixture(scope="module")
def killed_shard() -> Iterator[Run]:
    """Shard 0 killed with SIGKILL once; the supervisor restarts it."""
    service = OpsService(shards=2)
    try:
        service.start()
        before = service.scrape()
        os.kill(service.shard_pid(0), signal.SIGKILL)
        yield Run(service, before)
    finally:
        service.close()


def test_a_killed_shard_is_counted_as_restarted(killed_shard: Run) -> None:
    killed_shard.expect_rise("shard_restarts_total", 1, shard="0")
    assert killed_shard.service.scrape().total("shard_restarts_total", shard="1") == 0


def test_a_killed_shard_reports_up_again_once_restarted(killed_shard: Run) -> None:
    killed_shard.expect_rise("shard_restarts_total", 1, shard="0")
    killed_shard.service.wait_figure(
        "presence_b2b_shard_up{shard=0}", lambda s: s.total("shard_up", shard="0"), 1.0
    )
