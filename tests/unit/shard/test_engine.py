"""The engine end to end on a fake clock: bytes in, bytes and statuses out."""

from __future__ import annotations

import pytest
from engine_harness import PIDF_OPEN, RECORD, SERVER, SUBSCRIBER, Harness, at, probe
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState
from presence_b2b.shard.subscription import State
from presence_b2b.sip.headers import parse_name_addr
from presence_b2b.sip.message import Request

from presence_b2b.config import SipSettings


def test_initial_subscribe_carries_event_accept_expires_and_the_shard_contact() -> None:
    h = Harness()
    h.subscribe(1, RECORD, SUBSCRIBER)
    [(req, dest)] = h.sent
    assert isinstance(req, Request)
    assert (req.method, req.uri, dest) == ("SUBSCRIBE", RECORD, at(*SERVER))
    assert req.get("Event") == "presence"
    assert req.get("Accept") == "application/pidf+xml, multipart/related, application/rlmi+xml"
    assert req.get("Supported") == "eventlist"
    assert req.get("Expires") == "3600"
    assert req.get("Contact") == "<sip:127.0.0.1:5070>"
    assert req.get("Max-Forwards") == "70"
    assert "127.0.0.1:5070" in (req.get("Via") or "")
    assert parse_name_addr(req.get("From") or "").uri == SUBSCRIBER
    assert parse_name_addr(req.get("To") or "").uri == RECORD


def test_notify_becomes_a_status_with_the_parsed_pidf_and_is_answered_200() -> None:
    h = Harness()
    h.established()
    assert h.responses()[-1].status == 200
    [status] = h.delivered
    assert isinstance(status, Status)
    assert status.state is SubscriptionState.ACTIVE
    assert status.presentity is not None and status.presentity.basic == "open"
    assert status.content_type == "application/pidf+xml"
    assert status.body == PIDF_OPEN


def test_retransmitted_notify_gets_the_same_answer_and_no_second_status() -> None:
    h = Harness()
    first = h.established()
    again = h.notify(first, "active", PIDF_OPEN, branch="same")
    h.feed(again)
    assert [r.status for r in h.responses()] == [200, 200, 200]
    assert len(h.delivered) == 2


def test_retransmitted_notify_counts_as_a_retransmission_received() -> None:
    h = Harness()
    first = h.established()
    again = h.notify(first, "active", PIDF_OPEN)
    h.feed(again)
    h.feed(again)
    assert h.obs.counts["retransmission_received", ""] == 2
    assert len(h.delivered) == 2


def test_retransmitted_notify_after_an_unsubscribe_gets_the_teardown_answer_again() -> None:
    h = Harness()
    first = h.established()
    h.engine.unsubscribe(1)
    again = h.notify(first, "active", PIDF_OPEN)
    h.feed(again)
    assert [r.status for r in h.responses()][-2:] == [200, 200]
    assert len(h.delivered) == 1  # the teardown takes no new status


def test_retransmission_of_a_terminating_notify_gets_481_once_the_dialog_is_gone() -> None:
    h = Harness()
    first = h.established()
    final = h.notify(first, "terminated;reason=noresource")
    h.feed(final)
    assert [r.status for r in h.responses()][-2:] == [200, 481]


def test_notify_before_the_200_creates_the_dialog_and_is_delivered() -> None:
    h = Harness()
    h.subscribe(1, RECORD, SUBSCRIBER)
    first = h.requests()[-1]
    h.notify(first, "pending")
    h.answer(first, 200, ("Expires", "600"))
    assert [type(m) for m in h.delivered] == [Status]
    assert h.delivered[0].state is SubscriptionState.PENDING  # type: ignore[union-attr]
    assert h.responses()[-1].status == 200


def test_notify_for_no_dialog_gets_481() -> None:
    h = Harness()
    h.subscribe(1, RECORD, SUBSCRIBER)
    stranger = Request("SUBSCRIBE", RECORD)
    stranger.add("From", "<sip:x@y>;tag=nobody")
    stranger.add("Call-ID", "unknown@host")
    h.notify(stranger, "active")
    assert h.responses()[-1].status == 481


def test_notify_from_a_second_fork_gets_481_and_the_first_dialog_is_kept() -> None:
    h = Harness()
    first = h.established()
    h.notify(first, "active", PIDF_OPEN, tag="other-fork")
    assert h.responses()[-1].status == 481
    assert len(h.delivered) == 1


def test_refresh_goes_in_dialog_to_the_contact_delta_before_the_granted_expiry() -> None:
    h = Harness()
    h.established()
    h.advance(600 - 30 - 1)
    assert len(h.requests()) == 1
    h.advance(1)
    refresh = h.requests()[-1]
    assert refresh.uri == "sip:127.0.0.1:5090"
    assert (refresh.get("CSeq"), refresh.get("Expires")) == ("2 SUBSCRIBE", "3600")
    assert ";tag=srv1" in (refresh.get("To") or "")


def test_unsubscribe_sends_expires_0_and_the_terminating_notify_ends_it() -> None:
    h = Harness()
    first = h.established()
    h.unsubscribe(1)
    unsub = h.requests()[-1]
    assert unsub.get("Expires") == "0"
    h.answer(unsub, 200, ("Expires", "0"))
    h.notify(first, "terminated;reason=timeout")
    final = h.delivered[-1]
    assert isinstance(final, Status) and final.state is SubscriptionState.TERMINATED
    assert h.engine.idle


def test_unsubscribe_without_terminating_notify_ends_after_wait_for_term_notify() -> None:
    h = Harness(wait_for_term_notify=30)
    h.established()
    h.unsubscribe(1)
    h.answer(h.requests()[-1], 200)
    h.advance(29)
    assert not h.engine.idle
    h.advance(2)
    assert h.engine.idle
    assert h.delivered[-1] == Status(1, SubscriptionState.TERMINATED, "unsubscribed")


def test_no_response_retransmits_then_reports_a_timeout_with_the_retry_delay() -> None:
    h = Harness()
    h.subscribe(1, RECORD, SUBSCRIBER)
    h.advance(40)
    sent = h.requests()
    assert len(sent) > 5 and len({r.get("Via") for r in sent}) == 1  # retransmissions
    [failure] = h.delivered
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.retry_in) == (FailureKind.TIMEOUT, 120)


def test_error_reply_is_reported_and_retried_on_a_new_dialog() -> None:
    h = Harness(on_error_retry_time=60)
    h.subscribe(1, RECORD, SUBSCRIBER)
    first = h.requests()[-1]
    h.answer(first, 404)
    assert h.delivered == [Failure(1, FailureKind.SIP_ERROR, 404, "404 Error", 60.0)]
    h.advance(60)
    retry = h.requests()[-1]
    assert retry.get("Call-ID") != first.get("Call-ID")


def test_423_resends_at_once_with_min_expires() -> None:
    h = Harness(default_expiration=60)
    h.subscribe(1, RECORD, SUBSCRIBER)
    h.answer(h.requests()[-1], 423, ("Min-Expires", "120"))
    assert h.requests()[-1].get("Expires") == "120"
    assert h.delivered == []


def test_outbound_proxy_receives_every_subscribe_of_a_dialog_without_route_set() -> None:
    h = Harness(presence_outbound_proxy="sip:127.0.0.1:5999")
    h.subscribe(1, RECORD, SUBSCRIBER)
    assert h.sent[-1][1] == at("127.0.0.1", 5999)
    first = h.requests()[-1]
    h.answer(first, 200, ("Expires", "100"), ("Contact", "<sip:127.0.0.1:5090>"))
    h.notify(first, "active")
    h.refresh(1)
    refresh, dest = h.sent[-1]
    assert dest == at("127.0.0.1", 5999)
    assert isinstance(refresh, Request) and refresh.uri == "sip:127.0.0.1:5090"


def test_a_route_set_takes_in_dialog_subscribes_past_the_outbound_proxy() -> None:
    h = Harness(presence_outbound_proxy="sip:127.0.0.1:5999")
    h.subscribe(1, RECORD, SUBSCRIBER)
    first = h.requests()[-1]
    h.answer(
        first, 200, ("Expires", "100"), ("Contact", "<sip:127.0.0.1:5090>"),
        ("Record-Route", "<sip:127.0.0.1:5997;lr>"),
    )
    h.notify(first, "active")
    h.refresh(1)
    assert h.sent[-1][1] == at("127.0.0.1", 5997)


def test_presence_route_goes_into_the_first_subscribe() -> None:
    h = Harness(presence_route="<sip:127.0.0.1:5998;lr>")
    h.subscribe(1, RECORD, SUBSCRIBER)
    req, dest = h.sent[-1]
    assert isinstance(req, Request)
    assert req.get("Route") == "<sip:127.0.0.1:5998;lr>"
    assert dest == at("127.0.0.1", 5998)


def test_additional_presence_headers_are_appended() -> None:
    h = Harness(additional_presence_headers="P-Generated: yes\r\nP-Regenerated: no\r\n")
    h.subscribe(1, RECORD, SUBSCRIBER)
    assert h.requests()[-1].get("P-Regenerated") == "no"


def test_disabled_presence_handling_refuses_with_a_final_failure() -> None:
    h = Harness(handle_presence_subscriptions=0)
    h.subscribe(1, RECORD, SUBSCRIBER)
    [failure] = h.delivered
    assert isinstance(failure, Failure)
    assert failure.kind is FailureKind.REFUSED and failure.retry_in is None
    assert h.sent == []


@pytest.mark.parametrize("record", ["alice", "mailto:alice@example.com", ""])
def test_a_record_that_is_not_a_sip_uri_is_refused(record: str) -> None:
    h = Harness()
    h.subscribe(1, record, SUBSCRIBER)
    assert isinstance(h.delivered[0], Failure) and h.sent == []


def test_garbage_datagrams_are_counted_and_dropped_silently() -> None:
    h = Harness()
    h.datagram(b"\x00\xffgarbage")
    h.datagram(b"NOTIFY sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n")
    assert h.sent == []
    assert h.obs.counts["error", "parse"] >= 1


def test_a_request_missing_a_mandatory_header_gets_400() -> None:
    h = Harness()
    req = Request("NOTIFY", "sip:127.0.0.1:5070")
    req.add("Via", "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKabc")
    req.add("CSeq", "1 NOTIFY")
    req.add("From", "<sip:a@b>;tag=1")
    req.add("To", "<sip:c@d>")
    h.feed(req)
    assert h.responses()[-1].status == 400


def test_notify_without_subscription_state_gets_400() -> None:
    h = Harness()
    first = h.established()
    n = h.notify(first, "active")
    n.remove("Subscription-State")
    n.set("CSeq", "99 NOTIFY")
    n.set("Via", "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKnostate")
    h.feed(n)
    assert h.responses()[-1].status == 400


def test_options_is_answered_200_for_keepalive_probes() -> None:
    h = Harness()
    h.feed(probe())
    assert h.responses()[-1].status == 200


def test_state_gauges_follow_the_subscription() -> None:
    h = Harness()
    h.established()
    assert h.obs.states[State.CONFIRMED] == 1
    assert h.obs.states[State.UNCONFIRMED] == 0
    h.unsubscribe(1)
    h.answer(h.requests()[-1], 200)
    h.advance(31)
    assert all(n == 0 for n in h.obs.states.values())


def _dialogs(h: Harness) -> list[Request]:
    """First SUBSCRIBE of each dialog, in sending order (retransmissions left out)."""
    seen: dict[str, Request] = {}
    for r in h.requests():
        seen.setdefault(r.get("Call-ID") or "", r)
    return list(seen.values())


def _limited(rate: float) -> Harness:
    """A rate-limited engine whose server is slow but not congested: T1 long
    enough that no SUBSCRIBE is retransmitted (a congestion signal that would
    slow the pace, shard/pace.py) within these tests."""
    return Harness(subscribe_rate=rate, sip=SipSettings(t1=30.0, t2=60.0, t4=60.0))


def test_a_notify_the_server_sends_again_slows_the_pace_of_new_dialogs() -> None:
    h = Harness(subscribe_rate=10.0)
    first = h.established()
    notify = h.notify(first, "active;expires=600", PIDF_OPEN)
    h.feed(notify)  # the same NOTIFY again: our 200 was late or lost
    assert h.obs.paces[-1] < 10.0
    assert h.engine.pace is not None and h.engine.pace.cuts == 1


def test_an_unanswered_subscribe_does_not_slow_the_pace() -> None:
    h = Harness(subscribe_rate=10.0)
    h.subscribe(1)
    h.advance(40)  # retransmitted, then timed out: the server is away, we are not slow
    assert h.engine.pace is not None and h.engine.pace.cuts == 0


def test_subscribe_rate_holds_out_of_dialog_subscribes_beyond_the_rate() -> None:
    h = _limited(rate=2.0)
    for i in range(6):
        h.subscribe(i, f"sip:user{i}@127.0.0.1:5090", SUBSCRIBER)
    assert len(_dialogs(h)) == 2  # the bucket starts with one second's worth
    assert h.engine.held == 4
    h.advance(1.0)
    assert len(_dialogs(h)) == 4
    h.advance(1.0)
    assert len(_dialogs(h)) == 6 and h.engine.held == 0


def test_held_subscribes_leave_in_the_order_they_were_asked_for() -> None:
    h = _limited(rate=1.0)
    for i in range(3):
        h.subscribe(i, f"sip:user{i}@127.0.0.1:5090", SUBSCRIBER)
    h.advance(2.0)
    users = [r.uri.split("@")[0] for r in _dialogs(h)]
    assert users == ["sip:user0", "sip:user1", "sip:user2"]


def test_unsubscribing_a_held_subscription_ends_it_without_sending_anything() -> None:
    h = _limited(rate=1.0)
    h.subscribe(1, RECORD, SUBSCRIBER)
    h.subscribe(2, "sip:carol@127.0.0.1:5090", SUBSCRIBER)
    h.unsubscribe(2)
    h.advance(5.0)
    assert len(_dialogs(h)) == 1
    assert h.delivered[-1] == Status(2, SubscriptionState.TERMINATED, "unsubscribed")
    assert 2 not in h.engine.usages


def test_in_dialog_requests_are_not_rate_limited() -> None:
    h = _limited(rate=1.0)
    h.established()
    h.subscribe(2, "sip:carol@127.0.0.1:5090", SUBSCRIBER)  # waits for a token
    h.refresh(1)
    assert h.requests()[-1].get("CSeq") == "2 SUBSCRIBE"


def test_an_ended_subscription_lets_go_of_its_dialog() -> None:
    h = Harness()
    first = h.established()
    usage = h.engine.usage(1)
    h.unsubscribe(1)
    unsub = h.requests()[-1]
    h.answer(unsub, 200, ("Expires", "0"))
    h.notify(first, "terminated;reason=timeout")
    h.advance(5)
    assert 1 not in h.engine.usages
    assert usage.dialog is None and usage.lists is None and usage.auth is None


def test_a_notify_whose_via_cannot_be_read_is_dropped_and_leaves_its_dialog_alone() -> None:
    h = Harness()
    first = h.established()
    answered = len(h.responses())
    broken = h.notify_request(first, "active", PIDF_OPEN)
    broken.set("Via", "SIP/2.0/UDP ;rport")  # no answer can be addressed from it
    h.feed(broken)
    assert len(h.responses()) == answered
    assert h.obs.counts["error", "parse"] == 1
    assert len(h.delivered) == 1
    again = h.notify_request(first, "active", PIDF_OPEN)
    again.set("CSeq", broken.get("CSeq") or "")  # its CSeq was not taken
    h.feed(again)
    assert h.responses()[-1].status == 200
    assert len(h.delivered) == 2


def test_the_statuses_of_two_dialogs_share_their_content_type() -> None:
    h = Harness()
    h.established(1)
    h.established(2)
    first, second = (m for m in h.delivered if isinstance(m, Status) and m.body)
    assert first.content_type == "application/pidf+xml"
    assert first.content_type is second.content_type


def test_an_answered_subscribe_keeps_no_parsed_request_while_it_waits_for_timer_k() -> None:
    h = Harness()
    h.established()
    [txn] = list(h.engine.table.clients())  # completed: absorbs retransmitted answers
    assert txn.context.request is None, "only a challenge or a 503 needs it, at the answer"
