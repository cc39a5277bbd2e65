"""The client auth manager: which challenges it answers, how it reuses a nonce,
and when it refuses, as the requester will drive it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest
from presence_b2b.shard.auth import (
    AuthRefusal,
    AuthRetry,
    ClientAuth,
    RefusalReason,
    set_auth_headers,
)
from presence_b2b.sip.digest import ha1_of, hash_hex, parse_credentials
from presence_b2b.sip.message import Request, Response

from presence_b2b.credentials import store_from_mapping

BOB = "sip:bob@example.com"
PASSWORD = "s3cret-pw"


def counting_random() -> Callable[[int], bytes]:
    """Deterministic, distinct bytes per call: cnonces differ between answers."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def manager(*tables: dict[str, str]) -> ClientAuth:
    entries = list(tables) or [{"subscriber": BOB, "password": PASSWORD}]
    return ClientAuth(
        BOB, store_from_mapping({"credential": entries}), random_bytes=counting_random()
    )


def subscribe(cseq: int = 1, uri: str = "sip:alice@example.com") -> Request:
    return Request(
        "SUBSCRIBE",
        uri,
        [("From", f"<{BOB}>;tag=a"), ("CSeq", f"{cseq} SUBSCRIBE"), ("Event", "presence")],
    )


def challenge(code: int, *values: str) -> Response:
    name = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    return Response(code, "Auth", [(name, v) for v in values])


def digest(realm: str = "example.com", nonce: str = "n1", extra: str = "qop=auth") -> str:
    return f'Digest realm="{realm}", nonce="{nonce}", {extra}'


def retry_of(request: Request, outcome: AuthRetry | AuthRefusal | None) -> Request:
    """What the requester does with an AuthRetry: same request, next CSeq, new headers."""
    assert isinstance(outcome, AuthRetry), outcome
    number = int((request.get("CSeq") or "1").split()[0]) + 1
    retry = Request(request.method, request.uri, list(request.headers), request.body)
    retry.set("CSeq", f"{number} SUBSCRIBE")
    set_auth_headers(retry, outcome.headers)
    return retry


def sent_params(request: Request, name: str = "Authorization") -> list[dict[str, str]]:
    return [dict(parse_credentials(v).params) for v in request.get_all(name)]


def refusal(outcome: AuthRetry | AuthRefusal | None) -> AuthRefusal:
    assert isinstance(outcome, AuthRefusal), outcome
    return outcome


# ---------------------------------------------------------------- answering


def test_a_401_is_answered_with_an_authorization_header_the_server_can_check() -> None:
    auth, request = manager(), subscribe()
    retry = retry_of(request, auth.on_response(request, challenge(401, digest())))
    (params,) = sent_params(retry)
    ha1 = ha1_of("MD5", "bob", "example.com", PASSWORD)
    ha2 = hash_hex("MD5", "SUBSCRIBE:sip:alice@example.com")
    expected = hash_hex("MD5", f"{ha1}:n1:00000001:{params['cnonce']}:auth:{ha2}")
    assert params["response"] == expected
    assert params["username"] == "bob" and params["uri"] == "sip:alice@example.com"


def test_a_407_is_answered_with_proxy_authorization() -> None:
    auth, request = manager(), subscribe()
    retry = retry_of(request, auth.on_response(request, challenge(407, digest())))
    assert retry.get_all("Authorization") == []
    assert len(sent_params(retry, "Proxy-Authorization")) == 1


def test_the_strongest_algorithm_offered_is_chosen() -> None:
    auth, request = manager(), subscribe()
    response = challenge(
        401,
        digest(nonce="m", extra="qop=auth, algorithm=MD5"),
        digest(nonce="s", extra="qop=auth, algorithm=SHA-256"),
    )
    outcome = auth.on_response(request, response)
    (params,) = sent_params(retry_of(request, outcome))
    assert (params["algorithm"], params["nonce"]) == ("SHA-256", "s")
    assert isinstance(outcome, AuthRetry) and outcome.answered == ((401, "SHA-256"),)


@pytest.mark.parametrize("known", ["MD5", "MD5-sess"])
def test_an_unknown_algorithm_is_skipped_when_a_known_one_is_offered(known: str) -> None:
    auth, request = manager(), subscribe()
    response = challenge(
        401,
        digest(nonce="x", extra="qop=auth, algorithm=SHA-1024"),
        digest(nonce="m", extra=f"qop=auth, algorithm={known}"),
    )
    (params,) = sent_params(retry_of(request, auth.on_response(request, response)))
    assert (params["nonce"], params["algorithm"]) == ("m", known)


def test_a_stored_md5_ha1_answers_md5_when_sha256_is_also_offered() -> None:
    ha1 = ha1_of("MD5", "bob", "example.com", PASSWORD)
    auth = manager({"subscriber": BOB, "realm": "example.com", "ha1_md5": ha1})
    request = subscribe()
    response = challenge(
        401,
        digest(nonce="s", extra="qop=auth, algorithm=SHA-256"),
        digest(nonce="m", extra="qop=auth, algorithm=MD5"),
    )
    (params,) = sent_params(retry_of(request, auth.on_response(request, response)))
    assert params["algorithm"] == "MD5"


def test_every_realm_of_one_response_is_answered() -> None:
    auth, request = manager(), subscribe()
    response = Response(
        407,
        "Auth",
        [
            ("Proxy-Authenticate", digest("proxy.example.com", "p1")),
            ("Proxy-Authenticate", digest("example.com", "u1")),
        ],
    )
    retry = retry_of(request, auth.on_response(request, response))
    realms = {p["realm"] for p in sent_params(retry, "Proxy-Authorization")}
    assert realms == {"proxy.example.com", "example.com"}


def test_an_exact_realm_entry_wins_over_an_any_realm_entry() -> None:
    auth = manager(
        {"subscriber": BOB, "password": "any"},
        {"subscriber": BOB, "realm": "example.com", "username": "bob-ex", "password": "ex"},
    )
    request = subscribe()
    (params,) = sent_params(retry_of(request, auth.on_response(request, challenge(401, digest()))))
    assert params["username"] == "bob-ex"


def test_the_opaque_is_echoed() -> None:
    auth, request = manager(), subscribe()
    response = challenge(401, digest(extra='qop=auth, opaque="op-42"'))
    (params,) = sent_params(retry_of(request, auth.on_response(request, response)))
    assert params["opaque"] == "op-42"


def test_each_answer_draws_a_fresh_cnonce() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest(nonce="a"))))
    second = retry_of(first, auth.on_response(subscribe(), challenge(401, digest(nonce="b"))))
    assert sent_params(first)[0]["cnonce"] != sent_params(second)[0]["cnonce"]


# ---------------------------------------------------------------- reuse


def test_later_requests_reuse_the_nonce_with_the_next_count() -> None:
    auth, request = manager(), subscribe()
    retry_of(request, auth.on_response(request, challenge(401, digest())))
    refresh, unsubscribe = subscribe(3, "sip:p@10.0.0.1"), subscribe(4, "sip:p@10.0.0.1")
    set_auth_headers(refresh, auth.authorize(refresh))
    set_auth_headers(unsubscribe, auth.authorize(unsubscribe))
    assert [(p["nonce"], p["nc"]) for p in sent_params(refresh) + sent_params(unsubscribe)] == [
        ("n1", "00000002"),
        ("n1", "00000003"),
    ]
    assert sent_params(refresh)[0]["uri"] == "sip:p@10.0.0.1"


def test_nothing_is_added_before_any_challenge() -> None:
    assert manager().authorize(subscribe()) == []


def test_a_fresh_challenge_to_a_reused_nonce_is_answered_not_refused() -> None:
    auth, request = manager(), subscribe()
    retry_of(request, auth.on_response(request, challenge(401, digest(nonce="old"))))
    refresh = subscribe(3)
    set_auth_headers(refresh, auth.authorize(refresh))
    again = retry_of(refresh, auth.on_response(refresh, challenge(401, digest(nonce="new"))))
    assert [(p["nonce"], p["nc"]) for p in sent_params(again)] == [("new", "00000001")]


def test_a_retry_keeps_the_cached_credentials_of_realms_not_challenged_again() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(407, digest("proxy", "p1"))))
    second = retry_of(first, auth.on_response(first, challenge(401, digest("example.com", "u1"))))
    assert [(p["realm"], p["nc"]) for p in sent_params(second, "Proxy-Authorization")] == [
        ("proxy", "00000002")
    ]
    assert [(p["realm"], p["nc"]) for p in sent_params(second)] == [("example.com", "00000001")]


# ---------------------------------------------------------------- stale


def test_stale_true_gets_one_retry_with_the_new_nonce() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    outcome = auth.on_response(
        first, challenge(401, digest(nonce="n2", extra="qop=auth, stale=true"))
    )
    assert isinstance(outcome, AuthRetry) and outcome.stale
    assert [(p["nonce"], p["nc"]) for p in sent_params(retry_of(first, outcome))] == [
        ("n2", "00000001")
    ]


def test_a_second_stale_challenge_in_a_row_is_refused() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    second = retry_of(
        first,
        auth.on_response(first, challenge(401, digest(nonce="n2", extra="qop=auth, stale=true"))),
    )
    outcome = auth.on_response(
        second, challenge(401, digest(nonce="n3", extra="qop=auth, stale=true"))
    )
    assert refusal(outcome).reason == RefusalReason.STALE_AGAIN


def test_a_stale_nonce_after_a_reuse_is_renewed_again() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    stale = challenge(401, digest(nonce="n2", extra="qop=auth, stale=true"))
    retry_of(first, auth.on_response(first, stale))
    refresh = subscribe(5)
    set_auth_headers(refresh, auth.authorize(refresh))
    outcome = auth.on_response(
        refresh, challenge(401, digest(nonce="n3", extra="qop=auth, stale=true"))
    )
    assert isinstance(outcome, AuthRetry)


# ---------------------------------------------------------------- refusals


def test_no_credential_for_the_subscriber_and_realm_is_refused_with_code_and_realm() -> None:
    auth = manager({"subscriber": BOB, "realm": "other.example", "password": PASSWORD})
    outcome = refusal(auth.on_response(subscribe(), challenge(407, digest("example.com"))))
    assert (outcome.reason, outcome.code, outcome.realm) == (
        RefusalReason.NO_CREDENTIAL,
        407,
        "example.com",
    )


def test_a_realm_without_credential_refuses_the_whole_response() -> None:
    auth = manager({"subscriber": BOB, "realm": "example.com", "password": PASSWORD})
    response = challenge(401, digest("example.com", "a"), digest("elsewhere", "b"))
    assert refusal(auth.on_response(subscribe(), response)).realm == "elsewhere"


def test_only_unknown_algorithms_are_refused_naming_them() -> None:
    outcome = refusal(
        manager().on_response(subscribe(), challenge(401, digest(extra="algorithm=SHA-1")))
    )
    assert outcome.reason == RefusalReason.UNSUPPORTED
    assert "SHA-1" in outcome.detail


def test_an_ha1_for_another_algorithm_is_refused_as_unsupported() -> None:
    ha1 = ha1_of("MD5", "bob", "example.com", PASSWORD)
    auth = manager({"subscriber": BOB, "realm": "example.com", "ha1_md5": ha1})
    response = challenge(401, digest(extra="qop=auth, algorithm=SHA-256"))
    assert refusal(auth.on_response(subscribe(), response)).reason == RefusalReason.UNSUPPORTED


def test_a_401_without_challenge_is_refused() -> None:
    outcome = refusal(manager().on_response(subscribe(), Response(401, "Unauthorized")))
    assert (outcome.reason, outcome.code, outcome.realm) == (RefusalReason.NO_CHALLENGE, 401, None)


def test_a_407_with_only_basic_is_refused_as_no_challenge() -> None:
    outcome = manager().on_response(subscribe(), challenge(407, 'Basic realm="x"'))
    assert refusal(outcome).reason == RefusalReason.NO_CHALLENGE


def test_a_challenge_that_does_not_parse_is_refused_as_malformed() -> None:
    outcome = manager().on_response(subscribe(), challenge(401, 'Digest realm="x'))
    assert refusal(outcome).reason == RefusalReason.MALFORMED


def test_a_second_401_to_our_fresh_credentials_is_refused() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    outcome = refusal(auth.on_response(first, challenge(401, digest(nonce="n2"))))
    assert (outcome.reason, outcome.code, outcome.realm) == (
        RefusalReason.REJECTED,
        401,
        "example.com",
    )


def test_a_403_to_our_credentials_is_refused() -> None:
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest())))
    outcome = refusal(auth.on_response(first, Response(403, "Forbidden")))
    assert (outcome.reason, outcome.code) == (RefusalReason.REJECTED, 403)


def test_a_403_without_credentials_is_not_an_auth_matter() -> None:
    assert manager().on_response(subscribe(), Response(403, "Forbidden")) is None


@pytest.mark.parametrize("code", [200, 404, 423, 481, 500])
def test_other_responses_are_not_an_auth_matter(code: int) -> None:
    assert manager().on_response(subscribe(), Response(code, "x")) is None


def test_the_same_nonce_challenged_again_is_refused() -> None:
    auth, request = manager(), subscribe()
    retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    refresh = subscribe(3)
    set_auth_headers(refresh, auth.authorize(refresh))
    outcome = refusal(auth.on_response(refresh, challenge(401, digest(nonce="n1"))))
    assert outcome.reason == RefusalReason.NONCE_REUSED


def test_a_refused_challenge_keeps_the_cached_nonce() -> None:
    auth, request = manager(), subscribe()
    retry_of(request, auth.on_response(request, challenge(401, digest(nonce="n1"))))
    refusal(auth.on_response(subscribe(), challenge(401, digest(nonce="x", extra="algorithm=X"))))
    refresh = subscribe(3)
    set_auth_headers(refresh, auth.authorize(refresh))
    assert sent_params(refresh)[0]["nonce"] == "n1"


def test_the_failure_detail_names_reason_and_realm() -> None:
    auth = manager({"subscriber": BOB, "realm": "other", "password": PASSWORD})
    outcome = refusal(auth.on_response(subscribe(), challenge(401, digest("example.com"))))
    assert outcome.failure_detail().startswith("no-credential (realm 'example.com')")


# ---------------------------------------------------------------- secrets


def test_no_secret_reaches_a_log_record_in_a_whole_challenge_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth, request = manager(), subscribe()
    first = retry_of(request, auth.on_response(request, challenge(401, digest())))
    set_auth_headers(first, auth.authorize(first))
    auth.on_response(first, challenge(401, digest(nonce="n2")))
    auth.on_response(first, Response(403, "Forbidden"))
    assert PASSWORD not in caplog.text


def test_no_secret_in_reprs_or_refusals() -> None:
    auth, request = manager(), subscribe()
    retry = retry_of(request, auth.on_response(request, challenge(401, digest())))
    texts = [repr(auth), repr(auth.on_response(retry, challenge(401, digest(nonce="z"))))]
    texts.append(
        repr(store_from_mapping({"credential": [{"subscriber": BOB, "password": PASSWORD}]}))
    )
    for text in texts:
        assert PASSWORD not in text

