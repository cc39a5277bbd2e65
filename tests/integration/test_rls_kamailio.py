"""A real resource list server: Kamailio 5.6's `rls` serves a list to the engine.

rls sends the list's full state (RLMI in multipart/related) at once; the
engine's consumer gets one status per resource of the list, tagged with the
list and the resource. What Kamailio 5.6 did not do here (updates after a
member's PUBLISH) is in docs/testing.md; SIPp's uas_rlmi plays those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from presence_b2b.presence.status import Status, SubscriptionState

from tests.integration.test_engine_sipp import LiveEngine, live
from tests.peers.kamailio import peers_missing
from tests.peers.kamailio_rls import KamailioRlsServer

__all__ = ["live"]  # the fixture, used here by name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(peers_missing() is not None, reason=str(peers_missing())),
]


@pytest.fixture
def rls() -> Iterator[KamailioRlsServer]:
    server = KamailioRlsServer(list_user="friends", members=("bob", "carol"), watcher="watcher")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


def test_kamailio_rls_list_gives_one_status_per_resource(
    live: Callable[..., LiveEngine], rls: KamailioRlsServer
) -> None:
    engine = live()
    engine.subscribe(
        f"sip:friends@{rls.host}:{rls.port}", subscriber=f"sip:watcher@{rls.host}"
    )
    got = [m for m in engine.wait_delivered(2, timeout=10) if isinstance(m, Status)]
    assert sorted((s.list, s.resource) for s in got) == [
        (rls.list_uri, f"sip:bob@{rls.host}"),
        (rls.list_uri, f"sip:carol@{rls.host}"),
    ], rls.log_tail()
    assert {s.state for s in got} == {SubscriptionState.PENDING}
