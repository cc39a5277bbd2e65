"""The auth layer against a real challenging presence server: Kamailio 5.6 with
auth + auth_db, users in its sqlite `subscriber` table.

The test plays the subscriber by hand over UDP (the engine is not wired to the auth
layer yet): it builds each SUBSCRIBE with sip.message, lets ClientAuth answer the
401, and answers Kamailio's NOTIFYs. Kamailio runs with nonce_count=1, so a refresh
that reuses the nonce with nc=00000002 is checked by the real server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from presence_b2b.shard.auth import (
    AuthRefusal,
    AuthRetry,
    ClientAuth,
    RefusalReason,
    set_auth_headers,
)
from presence_b2b.sip.digest import ha1_of, parse_challenges, parse_credentials
from presence_b2b.sip.message import Request

from presence_b2b.credentials import store_from_mapping
from tests.peers.hand_uac import HandUac
from tests.peers.kamailio import AuthUser, KamailioAuth, KamailioPresenceServer, peers_missing

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


def credentials_for(server: KamailioPresenceServer, user: str) -> dict[str, str]:
    """Our side of the secret: bob's password, carol's HA1 (never her password)."""
    subscriber = f"sip:{user}@{server.host}"
    if user == HA1_USER:
        return {
            "subscriber": subscriber,
            "realm": REALM,
            "ha1_md5": ha1_of("MD5", HA1_USER, REALM, HA1_PASSWORD),
        }
    return {"subscriber": subscriber, "password": PLAIN_PASSWORD}


def user_of(server: KamailioPresenceServer) -> str:
    assert server.auth is not None
    return server.auth.users[0].username


def hand_uac(server: KamailioPresenceServer, user: str) -> HandUac:
    """A subscriber as `user` to alice, whose URI Kamailio keeps without the port."""
    return HandUac(
        server.host,
        server.port,
        from_uri=f"sip:{user}@{server.host}",
        to_uri=server.record_uri("alice"),
        request_uri=f"sip:alice@{server.host}:{server.port}",
    )


def retry(uac: HandUac, request: Request, outcome: AuthRetry) -> Request:
    """The challenged request again: next CSeq, new branch, the manager's headers."""
    again = uac.subscribe(int(request.get("Expires") or "60"))
    set_auth_headers(again, outcome.headers)
    return again


def test_subscribe_gets_401_then_200_and_a_notify(server: KamailioPresenceServer) -> None:
    user = user_of(server)
    uac = hand_uac(server, user)
    auth = ClientAuth(
        f"sip:{user}@{server.host}",
        store_from_mapping({"credential": [credentials_for(server, user)]}),
        random_bytes=os.urandom,
    )
    try:
        first = uac.subscribe()
        challenge = uac.send(first)
        assert challenge.status == 401, server.log_tail()
        (offered,) = parse_challenges(challenge.get_all("WWW-Authenticate"))
        assert server.auth is not None
        assert (offered.realm, offered.qop) == (REALM, ("auth",))
        assert offered.algorithm == server.auth.algorithm

        outcome = auth.on_response(first, challenge)
        assert isinstance(outcome, AuthRetry), outcome
        ok = uac.send(retry(uac, first, outcome))
        assert ok.status == 200, server.log_tail()
        notify = uac.wait_notify()
        assert (notify.get("Subscription-State") or "").startswith("active")

        # The refresh reuses the nonce: nc=00000002, no second challenge.
        refresh = uac.subscribe()
        set_auth_headers(refresh, auth.authorize(refresh))
        assert parse_credentials(refresh.get("Authorization") or "").params["nc"] == "00000002"
        assert uac.send(refresh).status == 200, server.log_tail()
        uac.wait_notify()

        unsubscribe = uac.subscribe(expires=0)
        set_auth_headers(unsubscribe, auth.authorize(unsubscribe))
        assert uac.send(unsubscribe).status == 200, server.log_tail()
        assert (uac.wait_notify().get("Subscription-State") or "").startswith("terminated")
    finally:
        uac.close()


def test_a_wrong_password_is_refused_after_one_retry(server: KamailioPresenceServer) -> None:
    user = user_of(server)
    uac = hand_uac(server, user)
    wrong = {"subscriber": f"sip:{user}@{server.host}", "password": "not-the-password"}
    auth = ClientAuth(
        wrong["subscriber"], store_from_mapping({"credential": [wrong]}), random_bytes=os.urandom
    )
    try:
        first = uac.subscribe()
        outcome = auth.on_response(first, uac.send(first))
        assert isinstance(outcome, AuthRetry), outcome
        again = retry(uac, first, outcome)
        refused = auth.on_response(again, uac.send(again))
        assert isinstance(refused, AuthRefusal), refused
        assert (refused.reason, refused.code, refused.realm) == (
            RefusalReason.REJECTED,
            401,
            REALM,
        )
    finally:
        uac.close()
