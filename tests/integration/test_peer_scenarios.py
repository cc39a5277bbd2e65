"""The real-peer scenarios are right: each SIPp UAS against a SIPp subscriber.

Engine integration tests trust these UAS scenarios to judge the subscriber under
test, so each one is first proven against a SIPp client that plays a correct
subscriber (tests/peers/scenarios/check_uac_*.xml), and a few against a wrong one
to show the checks bite. The Kamailio tests prove the presence-server fixture end to
end: subscribe, PUBLISH, NOTIFY with the published PIDF, unsubscribe.
"""

from __future__ import annotations

import pytest

from tests.peers.sipp import SippExit, SippProcess, run_pair, sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

FAST = {"expires": 4}


def test_happy_scenario_accepts_subscribe_refresh_and_unsubscribe() -> None:
    uas, _ = run_pair("uas_happy", "check_uac_happy", uas_keys=FAST)
    assert uas.count_received("SUBSCRIBE") == 3
    assert uas.count_sent("NOTIFY") == 3
    assert uas.count_received(200, cseq_method="NOTIFY") == 3


def test_happy_scenario_notify_targets_contact_and_echoes_dialog_identifiers() -> None:
    uas, _ = run_pair("uas_happy", "check_uac_happy", uas_keys=FAST)
    subscribe = uas.received("SUBSCRIBE")[0]
    ok = uas.sent(200, cseq_method="SUBSCRIBE")[0]
    notify = uas.sent("NOTIFY")[0]
    assert notify.first_line.split()[1] == "sip:127.0.0.1:" + subscribe.header(
        "Contact"
    ).rsplit(":", 1)[1].rstrip(">")
    assert notify.header("To") == subscribe.header("From")
    assert notify.header("From") == ok.header("To")
    assert notify.call_id == subscribe.call_id
    assert notify.header("Subscription-State") == "active;expires=4"
    assert 'entity="sip:presentity@127.0.0.1"' in notify.body
    assert [m.header("CSeq") for m in uas.sent("NOTIFY")] == ["1 NOTIFY", "2 NOTIFY", "3 NOTIFY"]


def test_basic_scenario_accepts_subscribe_and_unsubscribe() -> None:
    run_pair("uas_basic", "check_uac_basic", uas_keys=FAST)


def test_basic_scenario_fails_a_subscribe_with_the_wrong_event() -> None:
    uas = SippProcess("uas_basic", keys=FAST, recv_timeout_ms=2000).start()
    uac = SippProcess(
        "check_uac_basic", role="uac", remote_port=uas.port, keys={"event": "dialog"},
        recv_timeout_ms=2000,
    )  # fmt: skip
    try:
        uac.start()
        uac.wait(10)
        assert uas.wait(10) == SippExit.SOME_CALLS_FAILED
        assert "regexp" in uas.errors_log().lower()
    finally:
        uac.stop()
        uas.stop()


def test_notify_before_200_scenario_sends_notify_first_then_the_2xx() -> None:
    uas, _ = run_pair("uas_notify_before_200", "check_uac_notify_before_200", uas_keys=FAST)
    order = [m.first_line.split()[0] for m in uas.messages() if m.direction == "sent"]
    assert order[:2] == ["NOTIFY", "SIP/2.0"]
    ok = uas.sent(200, cseq_method="SUBSCRIBE")[0]
    subscribe = uas.received("SUBSCRIBE")[0]
    assert ok.header("Via") == subscribe.header("Via")
    assert ok.header("CSeq") == subscribe.header("CSeq")


def test_notify_retransmit_scenario_sends_identical_copies_and_takes_both_200s() -> None:
    uas, _ = run_pair("uas_notify_retransmit", "check_uac_basic", uas_keys=FAST)
    first, copy, _term = uas.sent("NOTIFY")
    assert first.text == copy.text
    assert uas.count_received(200, cseq_method="NOTIFY") == 3


def test_481_scenario_expects_a_new_dialog_right_after_the_481() -> None:
    uas, _ = run_pair("uas_481_on_refresh", "check_uac_481", uas_keys=FAST)
    rejected = uas.sent(481)[0]
    fresh = [
        m for m in uas.received("SUBSCRIBE") if m.time >= rejected.time and ";tag=" not in
        m.header("To")
    ]  # fmt: skip
    assert fresh, "no new out-of-dialog SUBSCRIBE after the 481"
    assert fresh[0].call_id != rejected.call_id
    assert (fresh[0].time - rejected.time).total_seconds() < 1.0


@pytest.mark.parametrize("uac", ["check_uac_423_same_callid", "check_uac_423_new_callid"])
def test_423_scenario_accepts_a_retry_at_min_expires(uac: str) -> None:
    uas, _ = run_pair("uas_423", uac)
    assert uas.sent(423)[0].header("Min-Expires") == "120"
    assert uas.sent(200, cseq_method="SUBSCRIBE")[0].header("Expires") == "120"


def test_423_scenario_fails_a_retry_below_min_expires() -> None:
    uas = SippProcess("uas_423", recv_timeout_ms=2000).start()
    uac = SippProcess(
        "check_uac_423_new_callid", role="uac", remote_port=uas.port,
        keys={"retry_expires": 119}, recv_timeout_ms=2000,
    )  # fmt: skip
    try:
        uac.start()
        uac.wait(20)
        assert uas.wait(20) == SippExit.SOME_CALLS_FAILED
        assert "below Min-Expires 120" in uas.logs_log()
    finally:
        uac.stop()
        uas.stop()


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
    reason: str, retry_after: int | None, state: str
) -> None:
    keys: dict[str, object] = {**FAST, "reason": reason}
    if retry_after is not None:
        keys["retry_after"] = retry_after
    uas, _ = run_pair(
        "uas_terminated", "check_uac_terminated", uas_keys=keys, uac_keys={"expect_state": state}
    )
    assert uas.sent("NOTIFY")[-1].header("Subscription-State") == state


def test_silent_scenario_never_answers_and_absorbs_retransmissions() -> None:
    uas, _ = run_pair("uas_silent", "check_uac_silent")
    assert uas.count_received("SUBSCRIBE") >= 2  # the original and SIPp's retransmissions
    assert not [m for m in uas.messages() if m.direction == "sent"]


def test_302_scenario_redirects_to_the_contact_given_by_key() -> None:
    target = SippProcess("uas_basic", keys=FAST).start()
    redirect = SippProcess("uas_302", keys={"redirect_port": target.port}).start()
    uac = SippProcess(
        "check_uac_302", role="uac", remote_port=redirect.port,
        keys={"redirect_port": target.port},
    )  # fmt: skip
    try:
        uac.start()
        for peer in (uac, redirect, target):
            peer.expect_success(20)
        moved = redirect.sent(302)[0]
        assert moved.header("Contact") == f"<sip:other@127.0.0.1:{target.port}>"
        assert target.received("SUBSCRIBE")[0].first_line.startswith(
            f"SUBSCRIBE sip:other@127.0.0.1:{target.port} "
        )
    finally:
        for peer in (uac, redirect, target):
            peer.stop()


def test_unsub_no_term_notify_scenario_sends_nothing_after_the_unsubscribe_2xx() -> None:
    uas, _ = run_pair("uas_unsub_no_term_notify", "check_uac_unsub_no_term_notify", uas_keys=FAST)
    assert uas.count_sent("NOTIFY") == 1
    assert uas.messages()[-1].first_line.startswith("SIP/2.0 200")


def test_load_pair_completes_a_burst_of_subscriptions() -> None:
    calls = 200
    uas = SippProcess("uas_load", calls=calls, trace_msg=False).start()
    uac = SippProcess(
        "uac_load", role="uac", remote_port=uas.port, calls=calls, rate=1000, trace_msg=False,
        inf_rows=[(f"rec{i}", f"sub{i}") for i in range(calls)],
    )  # fmt: skip
    try:
        uac.start()
        uac.expect_success(30)
        uas.expect_success(30)
    finally:
        uac.stop()
        uas.stop()
