"""Event packages other than presence, and resource lists, through the engine."""

from __future__ import annotations

from engine_harness import RECORD, SUBSCRIBER, Harness
from presence_b2b.presence.dialoginfo import DialogInfo
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState
from presence_b2b.presence.summary import MessageSummary
from presence_b2b.sip.message import Request

from tests.peers.list_bodies import LIST, multipart, pidf, resource, rlmi

DIALOG_INFO = (
    b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" entity="sip:alice@x"'
    b' version="3" state="full"><dialog id="d1" direction="initiator">'
    b"<state>confirmed</state></dialog></dialog-info>"
)
SUMMARY = b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@x\r\nVoice-Message: 2/8\r\n"


def subscribed(package: str, record: str = RECORD) -> tuple[Harness, Request]:
    h = Harness()
    h.engine.subscribe(1, record, SUBSCRIBER, package)
    h.pump()
    first = h.requests()[-1]
    h.answer(first, 200, ("Expires", "600"), ("Contact", "<sip:127.0.0.1:5090>"))
    return h, first


def notify(
    h: Harness,
    first: Request,
    package: str,
    content_type: str,
    body: bytes,
    *,
    state: str = "active;expires=600",
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    n = h.notify_request(first, state, body)
    n.set("Event", package)
    if content_type:
        n.set("Content-Type", content_type)
    else:
        n.remove("Content-Type")
    for name, value in extra:
        n.add(name, value)
    h.feed(n)


def statuses(h: Harness) -> list[Status]:
    return [m for m in h.delivered if isinstance(m, Status)]


def test_subscribe_event_and_accept_follow_the_package() -> None:
    _, first = subscribed("dialog")
    assert first.get("Event") == "dialog"
    assert first.get("Accept") == (
        "application/dialog-info+xml, multipart/related, application/rlmi+xml"
    )
    assert first.get("Supported") == "eventlist"


def test_refresh_keeps_the_package_of_its_dialog() -> None:
    h, first = subscribed("message-summary")
    notify(h, first, "message-summary", "application/simple-message-summary", SUMMARY)
    h.refresh(1)
    refresh = h.requests()[-1]
    assert refresh.get("Call-ID") == first.get("Call-ID")
    assert refresh.get("Event") == "message-summary"


def test_a_package_without_a_known_document_type_sends_no_accept() -> None:
    _, first = subscribed("x-vendor-state")
    assert first.get("Event") == "x-vendor-state"
    assert first.get("Accept") is None


def test_dialog_info_notify_is_delivered_with_its_parsed_document_and_raw_body() -> None:
    h, first = subscribed("dialog")
    notify(h, first, "dialog", "application/dialog-info+xml", DIALOG_INFO)
    assert h.responses()[-1].status == 200
    [status] = statuses(h)
    assert isinstance(status.document, DialogInfo)
    assert status.document.entity == "sip:alice@x"
    assert [d.state for d in status.document.dialogs] == ["confirmed"]
    assert status.body == DIALOG_INFO and status.presentity is None and not status.error


def test_message_summary_without_content_type_is_read_as_the_package_default() -> None:
    h, first = subscribed("message-summary")
    notify(h, first, "message-summary", "", SUMMARY)
    [status] = statuses(h)
    assert isinstance(status.document, MessageSummary)
    assert status.document.waiting is True


def test_unknown_package_body_travels_raw_without_error() -> None:
    h, first = subscribed("x-vendor-state")
    notify(h, first, "x-vendor-state", "text/plain", b"busy")
    [status] = statuses(h)
    assert (status.body, status.document, status.presentity, status.error) == (
        b"busy",
        None,
        None,
        "",
    )


def test_bad_document_of_a_package_is_answered_200_and_delivered_flagged() -> None:
    h, first = subscribed("dialog")
    notify(h, first, "dialog", "application/dialog-info+xml", b"<dialog-info")
    assert h.responses()[-1].status == 200
    [status] = statuses(h)
    assert status.document is None and status.error.startswith("dialog-info:")
    assert h.obs.counts["error", "body"] == 1


def test_notify_of_another_package_than_its_dialog_gets_489() -> None:
    h, first = subscribed("dialog")
    notify(h, first, "presence", "application/pidf+xml", pidf(RECORD))
    assert h.responses()[-1].status == 489
    assert statuses(h) == []


def test_unsolicited_notify_gets_481_and_is_counted_by_package() -> None:
    h = Harness()
    n = Request("NOTIFY", "sip:127.0.0.1:5070")
    for name, value in (
        ("Via", "SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKmwi1"),
        ("From", "<sip:voicemail@127.0.0.1>;tag=v1"),
        ("To", "<sip:bob@127.0.0.1>"),
        ("Call-ID", "unsolicited-1"),
        ("CSeq", "1 NOTIFY"),
        ("Event", "message-summary"),
        ("Subscription-State", "active"),
    ):
        n.add(name, value)
    n.body = SUMMARY
    h.feed(n)
    assert h.responses()[-1].status == 481
    assert h.obs.counts["notify_package", "message-summary/unmatched"] == 1


def test_a_package_that_is_not_a_token_is_refused() -> None:
    h = Harness()
    h.engine.subscribe(1, RECORD, SUBSCRIBER, "pres ence")
    h.pump()
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.REFUSED
    assert "event package" in failure.detail and h.requests() == []


# ---------------------------------------------------------------- resource lists


def full_list(version: int = 1) -> tuple[str, bytes]:
    return multipart(
        rlmi(
            version,
            True,
            resource("sip:bob@example.com", "i1", cid="bob@x")
            + resource("sip:carol@example.com", "i2", "pending"),
        ),
        ("bob@x", "application/pidf+xml", pidf("sip:bob@example.com")),
    )


def test_list_notify_gives_one_status_per_resource_with_list_and_resource() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *full_list(), extra=(("Require", "eventlist"),))
    assert h.responses()[-1].status == 200
    bob, carol = statuses(h)
    assert (bob.list, bob.resource, bob.state) == (
        LIST,
        "sip:bob@example.com",
        SubscriptionState.ACTIVE,
    )
    assert bob.presentity is not None and bob.presentity.basic == "open"
    assert (carol.resource, carol.state, carol.presentity) == (
        "sip:carol@example.com",
        SubscriptionState.PENDING,
        None,
    )


def test_partial_list_notify_gives_only_the_resources_it_names() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *full_list(1))
    partial = multipart(
        rlmi(2, False, resource("sip:carol@example.com", "i2", "terminated", reason="rejected"))
    )
    notify(h, first, "presence", *partial)
    last = statuses(h)[-1]
    assert len(statuses(h)) == 3
    assert (last.resource, last.state, last.reason) == (
        "sip:carol@example.com",
        SubscriptionState.TERMINATED,
        "rejected",
    )
    assert len(h.requests()) == 1  # no refresh: the versions follow


def test_a_gap_in_list_versions_refreshes_the_subscription_for_full_state() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *full_list(1))
    notify(h, first, "presence", *multipart(rlmi(5, False, resource("sip:bob@example.com"))))
    [_, refresh] = h.requests()
    assert refresh.get("Call-ID") == first.get("Call-ID")
    assert refresh.get("To") != first.get("To")  # in the dialog: it carries the To tag
    assert h.obs.counts["list_refresh", ""] == 1


def test_a_partial_state_first_is_a_gap_too() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *multipart(rlmi(4, False, resource("sip:bob@example.com"))))
    assert len(h.requests()) == 2


def test_no_second_list_refresh_while_one_is_out() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *multipart(rlmi(4, False, resource("sip:bob@example.com"))))
    notify(h, first, "presence", *multipart(rlmi(9, False, resource("sip:bob@example.com"))))
    assert len(h.requests()) == 2


def test_unreadable_list_body_is_answered_200_and_delivered_flagged_for_the_list() -> None:
    h, first = subscribed("presence", LIST)
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nnot rlmi\r\n--b--\r\n"
    notify(h, first, "presence", 'multipart/related;boundary="b"', body)
    assert h.responses()[-1].status == 200
    [flagged] = statuses(h)
    assert flagged.list == LIST  # the body did not say: the record is the list
    assert flagged.resource == "" and flagged.error and flagged.body == body
    assert h.obs.counts["error", "list"] == 1


def test_list_subscription_that_ends_says_so_for_the_list() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *full_list(1))
    notify(
        h, first, "presence", *multipart(rlmi(2, False, "")), state="terminated;reason=noresource"
    )
    last = statuses(h)[-1]
    assert (last.list, last.resource, last.state, last.reason) == (
        LIST,
        "",
        SubscriptionState.TERMINATED,
        "noresource",
    )


def test_notify_requiring_an_extension_other_than_eventlist_gets_420() -> None:
    h, first = subscribed("presence", LIST)
    notify(h, first, "presence", *full_list(1), extra=(("Require", "foo"),))
    resp = h.responses()[-1]
    assert resp.status == 420 and resp.get("Unsupported") == "foo"
