"""The real-peer scenarios are right: each SIPp UAS against a SIPp subscriber.

Engine integration tests trust these UAS scenarios to judge the subscriber under
test, so each one is first proven against a SIPp client that plays a correct
subscriber (tests/peers/scenarios/check_uac_*.xml), and a few against a wrong one
to show the checks bite. The Kamailio tests prove the presence-server fixture end to
end: subscribe, PUBLISH, NOTIFY with the published PIDF, unsubscribe.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.peers import kamailio as kamailio_module
from tests.peers import sipp as sipp_module
from tests.peers.fixtures import SippPairRunner, SippUacFactory, SippUasFactory
from tests.peers.kamailio import KamailioPresenceServer, options_ping
from tests.peers.ports import LOOPBACK, udp_bound_by
from tests.peers.sipp import SippExit, SippProcess, sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

FAST: dict[str, object] = {"expires": 4}


def test_happy_scenario_accepts_subscribe_refresh_and_unsubscribe(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_happy", "check_uac_happy", uas_keys=FAST)
    assert uas.count_received("SUBSCRIBE") == 3
    assert uas.count_sent("NOTIFY") == 3
    assert uas.count_received(200, cseq_method="NOTIFY") == 3


def test_happy_scenario_notify_targets_contact_and_echoes_dialog_identifiers(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_happy", "check_uac_happy", uas_keys=FAST)
    subscribe = uas.received("SUBSCRIBE")[0]
    ok = uas.sent(200, cseq_method="SUBSCRIBE")[0]
    notify = uas.sent("NOTIFY")[0]
    assert notify.first_line.split()[1] == "sip:127.0.0.1:" + subscribe.header("Contact").rsplit(
        ":", 1
    )[1].rstrip(">")
    assert notify.header("To") == subscribe.header("From")
    assert notify.header("From") == ok.header("To")
    assert notify.call_id == subscribe.call_id
    assert notify.header("Subscription-State") == "active;expires=4"
    assert 'entity="sip:presentity@127.0.0.1"' in notify.body
    assert [m.header("CSeq") for m in uas.sent("NOTIFY")] == ["1 NOTIFY", "2 NOTIFY", "3 NOTIFY"]


def test_basic_scenario_accepts_subscribe_and_unsubscribe(sipp_pair: SippPairRunner) -> None:
    sipp_pair("uas_basic", "check_uac_basic", uas_keys=FAST)


def test_basic_scenario_fails_a_subscribe_with_the_wrong_event(
    sipp_uas: SippUasFactory, sipp_uac: SippUacFactory
) -> None:
    uas = sipp_uas("uas_basic", recv_timeout_ms=2000, expires=4)
    uac = sipp_uac("check_uac_basic", uas.port, recv_timeout_ms=2000, event="dialog")
    uac.wait(10)
    assert uas.wait(10) == SippExit.SOME_CALLS_FAILED
    assert "regexp" in uas.errors_log().lower()


def test_notify_before_200_scenario_sends_notify_first_then_the_2xx(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_notify_before_200", "check_uac_notify_before_200", uas_keys=FAST)
    order = [m.first_line.split()[0] for m in uas.messages() if m.direction == "sent"]
    assert order[:2] == ["NOTIFY", "SIP/2.0"]
    ok = uas.sent(200, cseq_method="SUBSCRIBE")[0]
    subscribe = uas.received("SUBSCRIBE")[0]
    assert ok.header("Via") == subscribe.header("Via")
    assert ok.header("CSeq") == subscribe.header("CSeq")


def test_notify_retransmit_scenario_sends_identical_copies_and_takes_both_200s(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_notify_retransmit", "check_uac_basic", uas_keys=FAST)
    first, copy, _term = uas.sent("NOTIFY")
    assert first.text == copy.text
    assert uas.count_received(200, cseq_method="NOTIFY") == 3


def test_481_scenario_expects_a_new_dialog_right_after_the_481(sipp_pair: SippPairRunner) -> None:
    uas, _ = sipp_pair("uas_481_on_refresh", "check_uac_481", uas_keys=FAST)
    rejected = uas.sent(481)[0]
    fresh = [
        m for m in uas.received("SUBSCRIBE") if m.time >= rejected.time and ";tag=" not in
        m.header("To")
    ]  # fmt: skip
    assert fresh, "no new out-of-dialog SUBSCRIBE after the 481"
    assert fresh[0].call_id != rejected.call_id
    assert (fresh[0].time - rejected.time).total_seconds() < 1.0


@pytest.mark.parametrize("uac", ["check_uac_423_same_callid", "check_uac_423_new_callid"])
def test_423_scenario_accepts_a_retry_at_min_expires(sipp_pair: SippPairRunner, uac: str) -> None:
    uas, _ = sipp_pair("uas_423", uac)
    assert uas.sent(423)[0].header("Min-Expires") == "120"
    assert uas.sent(200, cseq_method="SUBSCRIBE")[0].header("Expires") == "120"


def test_423_scenario_fails_a_retry_below_min_expires(
    sipp_uas: SippUasFactory, sipp_uac: SippUacFactory
) -> None:
    uas = sipp_uas("uas_423", recv_timeout_ms=2000)
    uac = sipp_uac("check_uac_423_new_callid", uas.port, recv_timeout_ms=2000, retry_expires=119)
    uac.wait(20)
    assert uas.wait(20) == SippExit.SOME_CALLS_FAILED
    assert "below Min-Expires 120" in uas.logs_log()


@pytest.mark.parametrize(
    ("reason", "retry_after", "state"),
    [
        ("deactivated", None, "terminated;reason=deactivated"),
        ("probation", 5, "terminated;reason=probation;retry-after=5"),
        ("giveup", 30, "terminated;reason=giveup;retry-after=30"),
        ("rejected", None, "terminated;reason=rejected"),
        ("noresource", None, "terminated;reason=noresource"),
        ("timeout", None, "terminated;reason=timeout"),
        ("invariant", None, "terminated;reason=invariant"),
    ],
)
def test_terminated_scenario_sends_the_reason_and_retry_after(
    sipp_pair: SippPairRunner, reason: str, retry_after: int | None, state: str
) -> None:
    keys: dict[str, object] = {**FAST, "reason": reason}
    if retry_after is not None:
        keys["retry_after"] = retry_after
    uas, _ = sipp_pair(
        "uas_terminated", "check_uac_terminated", uas_keys=keys, uac_keys={"expect_state": state}
    )
    assert uas.sent("NOTIFY")[-1].header("Subscription-State") == state


def test_silent_scenario_never_answers_and_absorbs_retransmissions(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_silent", "check_uac_silent")
    assert uas.count_received("SUBSCRIBE") >= 2  # the original and SIPp's retransmissions
    assert not [m for m in uas.messages() if m.direction == "sent"]


def test_302_scenario_redirects_to_the_contact_given_by_key(
    sipp_uas: SippUasFactory, sipp_uac: SippUacFactory
) -> None:
    target = sipp_uas("uas_basic", expires=4)
    redirect = sipp_uas("uas_302", redirect_port=target.port)
    uac = sipp_uac("check_uac_302", redirect.port, redirect_port=target.port)
    for peer in (uac, redirect, target):
        peer.expect_success(20)
    moved = redirect.sent(302)[0]
    assert moved.header("Contact") == f"<sip:other@127.0.0.1:{target.port}>"
    assert target.received("SUBSCRIBE")[0].first_line.startswith(
        f"SUBSCRIBE sip:other@127.0.0.1:{target.port} "
    )


def test_unsub_no_term_notify_scenario_sends_nothing_after_the_unsubscribe_2xx(
    sipp_pair: SippPairRunner,
) -> None:
    uas, _ = sipp_pair("uas_unsub_no_term_notify", "check_uac_unsub_no_term_notify", uas_keys=FAST)
    assert uas.count_sent("NOTIFY") == 1
    assert uas.messages()[-1].first_line.startswith("SIP/2.0 200")


def test_load_pair_completes_a_burst_of_subscriptions(
    sipp_uas: SippUasFactory, sipp_uac: SippUacFactory
) -> None:
    calls = 200
    uas = sipp_uas("uas_load", calls=calls, trace_msg=False)
    uac = sipp_uac(
        "uac_load", uas.port, calls=calls, rate=1000, trace_msg=False,
        inf_rows=[(f"rec{i}", f"sub{i}") for i in range(calls)],
    )  # fmt: skip
    uac.expect_success(30)
    uas.expect_success(30)


def test_sipp_uas_fixture_serves_a_subscriber_on_its_port(
    sipp_uas: SippUasFactory, sipp_uac: SippUacFactory
) -> None:
    uas = sipp_uas("uas_basic", expires=4, note="in a meeting")
    uac = sipp_uac("check_uac_basic", uas.port, note="in a meeting")
    uac.expect_success(10)
    uas.expect_success(10)
    assert "<note>in a meeting</note>" in uas.sent("NOTIFY")[0].body


# ------------------------------------------------------------------ Kamailio


def _wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_kamailio_answers_options_on_loopback(kamailio: KamailioPresenceServer) -> None:
    assert kamailio.host == "127.0.0.1"
    assert options_ping(kamailio.port) == 200


def test_kamailio_notifies_a_subscriber_of_a_publish_and_of_the_unsubscribe(
    kamailio: KamailioPresenceServer, sipp_uac: SippUacFactory
) -> None:
    sub = sipp_uac("check_uac_kamailio", kamailio.port, record="alice", note="Out to lunch")
    assert _wait_until(lambda: sub.count_sent(200, cseq_method="NOTIFY") >= 1, 5), sub.report()
    etag = kamailio.publish("alice", basic="open", note="Out to lunch", expires=30)
    sub.expect_success(15)
    first, published, terminated = sub.received("NOTIFY")
    assert first.header("Subscription-State").startswith("active")
    assert "<basic>open</basic>" in published.body
    assert terminated.header("Subscription-State") == "terminated;reason=timeout"
    kamailio.unpublish("alice", etag)


def test_kamailio_sends_the_published_state_in_the_first_notify(
    kamailio: KamailioPresenceServer, sipp_uac: SippUacFactory
) -> None:
    etag = kamailio.publish("carol", basic="closed", note="gone home", expires=30)
    try:
        sub = sipp_uac("check_uac_kamailio", kamailio.port, record="carol", note="back")
        assert _wait_until(lambda: sub.count_received("NOTIFY") >= 1, 5), sub.report()
        assert "<basic>closed</basic>" in sub.received("NOTIFY")[0].body
        kamailio.publish("carol", basic="open", note="back", expires=30)
        sub.expect_success(15)
    finally:
        kamailio.unpublish("carol", etag)


@pytest.fixture
def taken_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A UDP port held by this test, handed out as the next 'free' port: the race in
    which another process binds the port a peer was about to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((LOOPBACK, 0))
        port: int = holder.getsockname()[1]
        for module in (sipp_module, kamailio_module):
            monkeypatch.setattr(module, "free_udp_port", lambda: port)
        yield port


def test_sipp_whose_port_was_taken_binds_a_new_one(taken_port: int) -> None:
    uas = SippProcess("uas_basic")
    try:
        with uas:
            assert uas.port != taken_port
            assert udp_bound_by(uas.pid or 0, uas.port)
    finally:
        uas.cleanup()


def test_kamailio_whose_port_was_taken_binds_a_new_one(taken_port: int) -> None:
    if kamailio_module.kamailio_binary() is None:
        pytest.skip("kamailio is not installed")
    server = KamailioPresenceServer()
    try:
        with server:
            assert server.port != taken_port
            assert options_ping(server.port) == 200
    finally:
        server.cleanup()
