"""The engine answers SIPp's digest-auth presence servers (RFC 3261 §22, RFC 7616).

The real engine on a real UDP socket, with a credentials store, subscribes to
SIPp scenarios that challenge with 401 or 407. SIPp's verifyauth checks MD5
answers; it cannot check SHA-256, so those responses are recomputed here from
SIPp's own message log.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from presence_b2b.presence.status import Failure, FailureKind
from presence_b2b.sip.digest import ha1_of, hash_hex, parse_credentials

from presence_b2b.credentials import CredentialStore, store_from_mapping
from tests.integration.test_engine_sipp import LiveEngine, live, statuses
from tests.peers.fixtures import SippUasFactory
from tests.peers.sipp import SippExit, SippProcess, sipp_binary

__all__ = ["live"]  # the fixture, used here by name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sipp_binary() is None, reason="sipp (sip-tester) is not installed"),
]

USER, PASSWORD, REALM = "watcher", "secret", "presence.test"
SUBSCRIBER = f"sip:{USER}@127.0.0.1"


def credentials(password: str = PASSWORD) -> CredentialStore:
    return store_from_mapping(
        {"credential": [{"subscriber": SUBSCRIBER, "password": password}]}
    )


def subscribe_then_unsubscribe(
    live: Callable[..., LiveEngine], uas: SippProcess, *, refresh: bool = False
) -> LiveEngine:
    engine = live(credentials=credentials())
    engine.subscribe(f"sip:presentity@127.0.0.1:{uas.port}", subscriber=SUBSCRIBER)
    engine.wait_delivered(1)
    if refresh:
        assert engine.engine.refresh(1)
        engine.driver.flush()
        engine.wait_delivered(2)
    engine.unsubscribe()
    assert engine.wait_peer(uas) == SippExit.ALL_CALLS_OK, uas.report()
    assert all(not isinstance(m, Failure) for m in engine.delivered), engine.delivered
    return engine


def expected_response(header: str, method: str = "SUBSCRIBE") -> str:
    """The response a server computes for these credentials (password known)."""
    p = dict(parse_credentials(header).params)
    algorithm = p["algorithm"]
    ha1 = ha1_of(algorithm, p["username"], p["realm"], PASSWORD)
    ha2 = hash_hex(algorithm, f"{method}:{p['uri']}")
    return hash_hex(algorithm, f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")


def test_407_sha256_is_answered_with_proxy_authorization(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_auth_407_sha256")
    subscribe_then_unsubscribe(live, uas)
    retried = uas.received("SUBSCRIBE")[1:]
    assert not any(m.header("Authorization") for m in retried)
    answered = [m.header("Proxy-Authorization") for m in retried]
    assert [dict(parse_credentials(h).params)["nc"] for h in answered] == ["00000001", "00000002"]
    for header in answered:
        assert dict(parse_credentials(header).params)["response"] == expected_response(header)


def test_double_challenge_is_answered_once_with_sha256(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_auth_double_challenge")
    subscribe_then_unsubscribe(live, uas)
    retried = uas.received("SUBSCRIBE")[1]
    assert (
        len([line for line in retried.text.splitlines() if line.startswith("Authorization:")]) == 1
    )
    header = retried.header("Authorization")
    assert dict(parse_credentials(header).params)["algorithm"] == "SHA-256"
    assert dict(parse_credentials(header).params)["response"] == expected_response(header)


def test_stale_nonce_gets_one_more_retry_and_no_failure(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_auth_stale")
    subscribe_then_unsubscribe(live, uas)
    assert uas.count_received("SUBSCRIBE") == 4


def test_refresh_reuses_the_nonce_with_the_next_count(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_auth_refresh_nonce_reuse")
    engine = subscribe_then_unsubscribe(live, uas, refresh=True)
    assert uas.count_sent(401) == 1
    subscribes = uas.received("SUBSCRIBE")
    assert len(subscribes) == 4
    ncs = [dict(parse_credentials(m.header("Authorization")).params)["nc"] for m in subscribes[1:]]
    assert ncs == ["00000001", "00000002", "00000003"]
    assert len(statuses(engine.delivered)) >= 2


def test_a_wrong_password_fails_with_kind_auth_after_one_retry(
    live: Callable[..., LiveEngine], sipp_uas: SippUasFactory
) -> None:
    uas = sipp_uas("uas_auth_refresh_nonce_reuse", recv_timeout_ms=2000)
    engine = live(credentials=credentials("wrong"), on_error_retry_time=60)
    engine.subscribe(f"sip:presentity@127.0.0.1:{uas.port}", subscriber=SUBSCRIBER)
    [failure] = engine.wait_delivered(1)
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.code) == (FailureKind.AUTH, 403)
    assert "presence.test" in failure.detail and "wrong" not in failure.detail
    assert engine.wait_peer(uas) == SippExit.SOME_CALLS_FAILED
    assert uas.count_received("SUBSCRIBE") == 2
