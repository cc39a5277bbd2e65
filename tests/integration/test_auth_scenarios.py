"""The SIPp digest-auth presence servers are right, and ClientAuth satisfies them.

The engine will be judged by these scenarios once the auth layer is wired into
its requester; until then a hand-driven subscriber (tests/peers/hand_uac.py)
builds each SUBSCRIBE and lets ClientAuth answer, which proves both sides: the
scenarios accept a correct subscriber (and fail a wrong password), and the
manager's answers pass SIPp's checks. SIPp's verifyauth checks MD5 only, so the
SHA-256 responses are recomputed here from SIPp's own message log.
"""

from __future__ import annotations

import os

import pytest
from presence_b2b.shard.auth import AuthRetry, ClientAuth, set_auth_headers
from presence_b2b.sip.digest import ha1_of, hash_hex, parse_credentials
from presence_b2b.sip.message import Request

from presence_b2b.credentials import store_from_mapping
from tests.peers.fixtures import SippUasFactory
from tests.peers.hand_uac import HandUac
from tests.peers.sipp import SippExit, SippProcess, sipp_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

USER, PASSWORD, REALM = "watcher", "secret", "presence.test"
SUBSCRIBER = f"sip:{USER}@127.0.0.1"


def subscriber(uas: SippProcess) -> HandUac:
    return HandUac(
        "127.0.0.1",
        uas.port,
        from_uri=SUBSCRIBER,
        to_uri="sip:presentity@127.0.0.1",
        request_uri=f"sip:presentity@127.0.0.1:{uas.port}",
    )


def client_auth(password: str = PASSWORD) -> ClientAuth:
    entry = {"subscriber": SUBSCRIBER, "password": password}
    return ClientAuth(
        SUBSCRIBER, store_from_mapping({"credential": [entry]}), random_bytes=os.urandom
    )


def authorized(uac: HandUac, auth: ClientAuth, expires: int) -> Request:
    """The dialog's next SUBSCRIBE with the manager's cached credentials."""
    request = uac.subscribe(expires)
    set_auth_headers(request, auth.authorize(request))
    return request


def until_accepted(uac: HandUac, auth: ClientAuth, request: Request, limit: int = 3) -> int:
    """Send, answering challenges as the requester will; the final status."""
    for _ in range(limit):
        response = uac.send(request)
        outcome = auth.on_response(request, response)
        if not isinstance(outcome, AuthRetry):
            return response.status
        request = uac.subscribe(int(request.get("Expires") or "60"))
        set_auth_headers(request, outcome.headers)
    raise AssertionError("still challenged")


def subscribe_then_unsubscribe(uas: SippProcess, *, refresh: bool = False) -> None:
    auth = client_auth()
    with subscriber(uas) as uac:
        assert until_accepted(uac, auth, uac.subscribe(60)) == 200
        uac.wait_notify()
        if refresh:
            assert uac.send(authorized(uac, auth, 60)).status == 200
            uac.wait_notify()
        assert uac.send(authorized(uac, auth, 0)).status == 200
        assert (uac.wait_notify().get("Subscription-State") or "").startswith("terminated")
    uas.expect_success(timeout=10)


def expected_response(header: str, method: str = "SUBSCRIBE") -> str:
    """The response a server computes for these credentials (password known)."""
    p = dict(parse_credentials(header).params)
    algorithm = p["algorithm"]
    ha1 = ha1_of(algorithm, p["username"], p["realm"], PASSWORD)
    ha2 = hash_hex(algorithm, f"{method}:{p['uri']}")
    return hash_hex(algorithm, f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")


def test_407_sha256_is_answered_with_proxy_authorization(sipp_uas: SippUasFactory) -> None:
    uas = sipp_uas("uas_auth_407_sha256")
    subscribe_then_unsubscribe(uas)
    retried = uas.received("SUBSCRIBE")[1:]
    assert not any(m.header("Authorization") for m in retried)
    answered = [m.header("Proxy-Authorization") for m in retried]
    assert [dict(parse_credentials(h).params)["nc"] for h in answered] == ["00000001", "00000002"]
    for header in answered:
        assert dict(parse_credentials(header).params)["response"] == expected_response(header)


def test_double_challenge_is_answered_once_with_sha256(sipp_uas: SippUasFactory) -> None:
    uas = sipp_uas("uas_auth_double_challenge")
    subscribe_then_unsubscribe(uas)
    retried = uas.received("SUBSCRIBE")[1]
    assert (
        len([line for line in retried.text.splitlines() if line.startswith("Authorization:")]) == 1
    )
    header = retried.header("Authorization")
    assert dict(parse_credentials(header).params)["response"] == expected_response(header)


def test_stale_nonce_gets_one_more_retry(sipp_uas: SippUasFactory) -> None:
    uas = sipp_uas("uas_auth_stale")
    subscribe_then_unsubscribe(uas)
    assert uas.count_received("SUBSCRIBE") == 4


def test_refresh_reuses_the_nonce_with_the_next_count(sipp_uas: SippUasFactory) -> None:
    uas = sipp_uas("uas_auth_refresh_nonce_reuse")
    subscribe_then_unsubscribe(uas, refresh=True)
    assert uas.count_sent(401) == 1
    assert uas.count_received("SUBSCRIBE") == 4


def test_refresh_scenario_fails_a_wrong_password(sipp_uas: SippUasFactory) -> None:
    uas = sipp_uas("uas_auth_refresh_nonce_reuse", recv_timeout_ms=2000)
    with subscriber(uas) as uac:
        assert until_accepted(uac, client_auth("wrong"), uac.subscribe(60)) == 403
    assert uas.wait(10) == SippExit.SOME_CALLS_FAILED
