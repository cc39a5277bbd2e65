"""Event packages other than presence, and resource lists, against SIPp notifiers.

The real engine on a real UDP socket (the LiveEngine of test_engine_sipp.py)
subscribes with a package; SIPp checks the SUBSCRIBEs it gets (Event, Accept,
Supported) and sends the package's NOTIFYs, a list server's multipart/related
ones included.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from presence_b2b.presence.dialoginfo import DialogInfo
from presence_b2b.presence.status import SubscriptionState
from presence_b2b.presence.summary import MessageCounts, MessageSummary

from tests.integration.test_engine_sipp import (
    LiveEngine,
    header,
    live,
    record_at,
    statuses,
)
from tests.peers.fixtures import SippUasFactory
from tests.peers.sipp import SippExit, sipp_binary

__all__ = ["live"]  # the fixture, used here by name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

SUBSCRIBER = "sip:watcher@example.com"


def subscribe(engine: LiveEngine, record: str, package: str) -> None:
    engine.engine.subscribe(1, record, SUBSCRIBER, package)
    engine.driver.flush()


def test_dialog_package_notify_arrives_as_a_dialog_info_document(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_dialog_info", expires=60)
    engine = live()
    subscribe(engine, record_at(uas, "alice"), "dialog")
    [status] = statuses(engine.wait_delivered(1))
    doc = status.document
    assert isinstance(doc, DialogInfo)
    assert doc.entity == record_at(uas, "alice")
    [dialog] = doc.dialogs
    assert (dialog.id, dialog.state, dialog.direction) == ("as7d900as8", "confirmed", "initiator")
    assert dialog.remote is not None and dialog.remote.identity == "sip:bob@example.com"
    engine.unsubscribe()
    assert engine.wait_peer(uas) == SippExit.ALL_CALLS_OK, uas.report()


def test_message_summary_notify_arrives_with_its_counts(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_message_summary", expires=60)
    engine = live()
    subscribe(engine, record_at(uas, "mailbox"), "message-summary")
    [status] = statuses(engine.wait_delivered(1))
    assert status.document == MessageSummary(
        waiting=True,
        account=record_at(uas, "mailbox"),
        counts=(MessageCounts("voice-message", 2, 8, 0, 2),),
    )
    engine.unsubscribe()
    assert engine.wait_peer(uas) == SippExit.ALL_CALLS_OK, uas.report()


def test_resource_list_gives_one_status_per_resource_and_refreshes_after_a_gap(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_rlmi", expires=60)
    engine = live()
    the_list = record_at(uas, "friends")
    subscribe(engine, the_list, "presence")
    # full state (bob, carol), partial (carol), gap (bob), full state after the refresh (bob,
    # and carol removed)
    got = statuses(engine.wait_delivered(6))
    assert [(s.resource, str(s.state), s.reason) for s in got] == [
        ("sip:bob@example.com", "active", ""),
        ("sip:carol@example.com", "pending", ""),
        ("sip:carol@example.com", "terminated", "rejected"),
        ("sip:bob@example.com", "active", ""),
        ("sip:bob@example.com", "active", ""),
        ("sip:carol@example.com", "terminated", "removed"),
    ]
    assert {s.list for s in got} == {the_list}
    basics = [s.presentity.basic if s.presentity else None for s in got]
    assert basics == ["open", None, None, "closed", "closed", None]
    refreshes = [r for r in engine.sent_requests() if "tag=" in header(r, "To")]
    assert len(refreshes) == 1, "one in-dialog refresh, asked for by the version gap"
    engine.unsubscribe()
    assert engine.wait_peer(uas) == SippExit.ALL_CALLS_OK, uas.report()
    final = statuses(engine.delivered)[-1]
    assert final.state is SubscriptionState.TERMINATED
