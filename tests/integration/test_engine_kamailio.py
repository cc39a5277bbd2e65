"""The real engine against a real presence server: Kamailio 5.6 on 127.0.0.1.

PUBLISHes (SIPp) change a presentity's state on Kamailio; the engine, subscribed
to that presentity as some watcher, must turn Kamailio's NOTIFYs into statuses.
Kamailio's habits the engine has to live with: its 200 Contact is the target of
in-dialog requests, its NOTIFY CSeq starts at 2, an unknown presentity gets an
active NOTIFY with no body, and unsubscribe ends with terminated;reason=timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from presence_b2b.presence.status import Status, SubscriptionState

from tests.integration.test_engine_sipp import LiveEngine, live, notes
from tests.peers.kamailio import KamailioPresenceServer
from tests.peers.sipp import SippError, SippProcess

pytestmark = [pytest.mark.integration]

__all__ = ["live"]  # the fixture, used here by name

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def modify_publication(
    kamailio: KamailioPresenceServer, user: str, etag: str, *, basic: str, note: str
) -> str:
    """PUBLISH with SIP-If-Match: replace the document rather than add a second one.

    Returns the publication's new SIP-ETag (each modification changes it)."""
    pub = SippProcess(
        SCENARIOS / "publish_modify.xml",
        role="uac",
        remote_port=kamailio.port,
        keys={"user": user, "etag": etag, "basic": basic, "note": note, "expires": 30},
    ).start()
    try:
        if pub.wait(10) != 0:
            raise SippError(pub.report() + "\n\nkamailio log:\n" + kamailio.log_tail())
        return pub.received(200, cseq_method="PUBLISH")[-1].header("SIP-ETag")
    finally:
        pub.cleanup()


@pytest.fixture
def subscribed(
    kamailio: KamailioPresenceServer, live: Callable[..., LiveEngine]
) -> Iterator[tuple[LiveEngine, str]]:
    """An engine subscribed to dave@127.0.0.1 on Kamailio, past the first NOTIFY."""
    user = "dave"
    eng = live(wait_for_term_notify=5)
    eng.subscribe(f"sip:{user}@{kamailio.host}:{kamailio.port}", subscriber="sip:erin@127.0.0.1")
    eng.wait_delivered(1, timeout=5)
    yield eng, user


def test_unknown_presentity_gets_an_active_status_without_a_document(
    subscribed: tuple[LiveEngine, str],
) -> None:
    eng, _ = subscribed
    [first] = eng.delivered
    assert isinstance(first, Status)
    assert first.state is SubscriptionState.ACTIVE
    assert (first.presentity, first.body, first.error) == (None, b"", "")


def test_publishes_reach_the_consumer_as_open_then_closed_and_unsubscribe_terminates(
    kamailio: KamailioPresenceServer, subscribed: tuple[LiveEngine, str]
) -> None:
    eng, user = subscribed
    etag = eng.run_blocking(
        lambda: kamailio.publish(user, basic="open", note="Out to lunch", expires=30)
    )
    opened = eng.wait_delivered(2)[1]
    assert isinstance(opened, Status), opened
    assert opened.state is SubscriptionState.ACTIVE
    assert opened.presentity is not None and opened.presentity.basic == "open"
    assert notes(opened) == ["Out to lunch"]
    assert opened.content_type.startswith("application/pidf+xml")

    etag = eng.run_blocking(
        lambda: modify_publication(kamailio, user, etag, basic="closed", note="Gone home")
    )
    closed = eng.wait_delivered(3)[2]
    assert isinstance(closed, Status), closed
    assert closed.presentity is not None and closed.presentity.basic == "closed"
    assert notes(closed) == ["Gone home"]

    eng.unsubscribe()
    assert eng.run_until(lambda: eng.finished == [1], 5), eng.delivered
    last = eng.delivered[-1]
    assert isinstance(last, Status)
    assert (last.state, last.reason) == (SubscriptionState.TERMINATED, "timeout")
    assert len(eng.delivered) == 4
    unsubscribe = eng.sent_requests()[-1]
    assert unsubscribe.startswith(f"SUBSCRIBE sip:{kamailio.host}:{kamailio.port}")
    kamailio.unpublish(user, etag)
