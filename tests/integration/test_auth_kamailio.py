"""The engine against a real challenging presence server: Kamailio 5.6 with
auth + auth_db, users in its sqlite `subscriber` table.

The real engine on a UDP socket, with a credentials store, subscribes; Kamailio
challenges with 401 and checks our answers. Kamailio runs with nonce_count=1,
so a refresh that reuses the nonce with nc=00000002 is checked by the real
server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from presence_b2b.presence.status import Failure, FailureKind, Status, SubscriptionState
from presence_b2b.sip.digest import ha1_of, parse_credentials

from presence_b2b.credentials import CredentialStore, store_from_mapping
from tests.integration.test_engine_sipp import LiveEngine, header, live
from tests.peers.kamailio import AuthUser, KamailioAuth, KamailioPresenceServer, peers_missing

__all__ = ["live"]  # the fixture, used here by name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(peers_missing() is not None, reason=str(peers_missing())),
]

REALM = "presence.test"
PLAIN_USER, PLAIN_PASSWORD = "bob", "bob-plain-pw"
HA1_USER, HA1_PASSWORD = "carol", "carol-pw-only-as-ha1"


@pytest.fixture(params=["plain-md5", "ha1-md5", "plain-sha256"])
def server(request: pytest.FixtureRequest) -> Iterator[KamailioPresenceServer]:
    """Kamailio reading bob's plain password (challenging with MD5 or SHA-256), or
    carol's precomputed MD5 HA1 only."""
    storage, _, algorithm = request.param.partition("-")
    users = (
        (AuthUser(HA1_USER, ha1=ha1_of("MD5", HA1_USER, REALM, HA1_PASSWORD)),)
        if storage == "ha1"
        else (AuthUser(PLAIN_USER, password=PLAIN_PASSWORD),)
    )
    auth = KamailioAuth(
        users,
        realm=REALM,
        storage="ha1" if storage == "ha1" else "plain",
        algorithm="SHA-256" if algorithm == "sha256" else "MD5",
    )
    with KamailioPresenceServer(auth=auth) as k:
        yield k


def credentials_for(
    server: KamailioPresenceServer, user: str, password: str = ""
) -> CredentialStore:
    """Our side of the secret: bob's password, carol's HA1 (never her password)."""
    subscriber = f"sip:{user}@{server.host}"
    if password:
        entry = {"subscriber": subscriber, "password": password}
    elif user == HA1_USER:
        entry = {
            "subscriber": subscriber,
            "realm": REALM,
            "ha1_md5": ha1_of("MD5", HA1_USER, REALM, HA1_PASSWORD),
        }
    else:
        entry = {"subscriber": subscriber, "password": PLAIN_PASSWORD}
    return store_from_mapping({"credential": [entry]})


def user_of(server: KamailioPresenceServer) -> str:
    assert server.auth is not None
    return server.auth.users[0].username


def subscribe(
    live: Callable[..., LiveEngine], server: KamailioPresenceServer, password: str = ""
) -> LiveEngine:
    user = user_of(server)
    engine = live(
        credentials=credentials_for(server, user, password),
        wait_for_term_notify=5,
        on_error_retry_time=60,
    )
    engine.subscribe(
        f"sip:alice@{server.host}:{server.port}", subscriber=f"sip:{user}@{server.host}"
    )
    return engine


def test_subscribe_is_challenged_answered_refreshed_and_unsubscribed(
    live: Callable[..., LiveEngine], server: KamailioPresenceServer
) -> None:
    engine = subscribe(live, server)
    [first] = engine.wait_delivered(1, timeout=5)
    assert isinstance(first, Status), (first, server.log_tail())
    assert first.state is SubscriptionState.ACTIVE
    sent = engine.sent_requests()
    assert len(sent) == 2 and not header(sent[0], "Authorization")
    answer = dict(parse_credentials(header(sent[1], "Authorization")).params)
    assert server.auth is not None
    assert (answer["realm"], answer["algorithm"], answer["nc"]) == (
        REALM, server.auth.algorithm, "00000001"
    )

    # The refresh reuses the nonce: nc=00000002, no second challenge.
    assert engine.engine.refresh(1)
    engine.driver.flush()
    engine.wait_delivered(2, timeout=5)
    refresh = engine.sent_requests()[-1]
    assert dict(parse_credentials(header(refresh, "Authorization")).params)["nc"] == "00000002"
    assert not any(isinstance(m, Failure) for m in engine.delivered), server.log_tail()

    engine.unsubscribe()
    assert engine.run_until(lambda: engine.finished == [1], 5), engine.delivered
    assert len(engine.sent_requests()) == 4, "no challenge after the first"


def test_a_wrong_password_is_an_auth_failure_and_no_loop(
    live: Callable[..., LiveEngine], server: KamailioPresenceServer
) -> None:
    engine = subscribe(live, server, password="not-the-password")
    [failure] = engine.wait_delivered(1, timeout=5)
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.code) == (FailureKind.AUTH, 401)
    assert REALM in failure.detail and "not-the-password" not in failure.detail
    engine.run_for(3)
    assert len(engine.sent_requests()) == 2, "one answer, then the wait of on_error_retry_time"
