"""Digest challenges to the engine's SUBSCRIBEs (RFC 3261 §22, RFC 7616)."""

from __future__ import annotations

from engine_harness import SUBSCRIBER, Harness, response_to
from presence_b2b.presence.status import Failure, FailureKind, Status
from presence_b2b.sip.digest import parse_credentials
from presence_b2b.sip.message import Request, Response

from presence_b2b.credentials import CredentialStore, store_from_mapping

PASSWORD = "s3cret-Pa55"
REALM = "presence.test"


def credentials(password: str = PASSWORD, realm: str = REALM) -> CredentialStore:
    return store_from_mapping(
        {"credential": [{"subscriber": SUBSCRIBER, "realm": realm, "password": password}]}
    )


def challenge(nonce: str = "n1", *, algorithm: str = "MD5", stale: bool = False) -> str:
    extra = ", stale=true" if stale else ""
    return f'Digest realm="{REALM}", nonce="{nonce}", algorithm={algorithm}, qop="auth"{extra}'


def authorization(req: Request, name: str = "Authorization") -> dict[str, str]:
    value = req.get(name)
    assert value is not None, f"no {name} in {req.to_bytes()!r}"
    return dict(parse_credentials(value).params)


def challenged(h: Harness, code: int = 401, header: str = "WWW-Authenticate") -> Request:
    """Subscribe, and challenge the first SUBSCRIBE; the retry that came back."""
    h.subscribe(1)
    first = h.requests()[-1]
    h.answer(first, code, (header, challenge()))
    return h.requests()[-1]


def test_a_401_is_answered_with_the_same_call_id_and_from_tag_and_the_next_cseq() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    first = h.requests()[0]
    assert len(h.requests()) == 2
    assert retry.get("Call-ID") == first.get("Call-ID")
    assert retry.get("From") == first.get("From")
    assert retry.get("CSeq") == "2 SUBSCRIBE"
    assert retry.get("Via") != first.get("Via"), "a new branch: a new transaction"
    params = authorization(retry)
    assert (params["realm"], params["nonce"], params["nc"], params["qop"]) == (
        REALM, "n1", "00000001", "auth"
    )
    assert h.delivered == [], "no failure for a challenge that was answered"


def test_the_answered_subscribe_establishes_the_subscription() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 200, ("Expires", "600"), ("Contact", "<sip:127.0.0.1:5090>"))
    h.notify(retry, "active;expires=600")
    assert [type(m) for m in h.delivered] == [Status]


def test_a_refresh_reuses_the_nonce_with_the_next_count_and_no_round_trip() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 200, ("Expires", "600"), ("Contact", "<sip:127.0.0.1:5090>"))
    h.notify(retry, "active;expires=600")
    h.refresh(1)
    refresh = h.requests()[-1]
    params = authorization(refresh)
    assert (params["nonce"], params["nc"]) == ("n1", "00000002")
    assert h.obs.counts["auth_reuse", ""] == 1


def test_a_407_is_answered_with_proxy_authorization() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h, 407, "Proxy-Authenticate")
    assert authorization(retry, "Proxy-Authorization")["realm"] == REALM
    assert retry.get("Authorization") is None
    assert h.obs.counts["auth_challenge", "407/MD5"] == 1


def test_sha_256_is_chosen_over_md5_when_both_are_offered() -> None:
    h = Harness(credentials=credentials())
    h.subscribe(1)
    first = h.requests()[-1]
    h.feed(_response(first, 401, challenge("m"), challenge("s", algorithm="SHA-256")))
    assert authorization(h.requests()[-1])["algorithm"] == "SHA-256"


def _response(req: Request, code: int, *challenges: str) -> Response:
    return response_to(req, code, *(("WWW-Authenticate", c) for c in challenges))


def test_no_credential_for_the_realm_fails_with_kind_auth_and_waits_to_retry() -> None:
    h = Harness(credentials=credentials(realm="elsewhere"), on_error_retry_time=30)
    challenged(h)
    [failure] = h.delivered
    assert isinstance(failure, Failure)
    assert (failure.kind, failure.code, failure.retry_in) == (FailureKind.AUTH, 401, 30)
    assert REALM in failure.detail
    assert len(h.requests()) == 1, "no retry without credentials"
    assert h.obs.counts["auth_failure", "no-credential"] == 1


def test_without_a_credentials_file_a_challenge_is_an_auth_failure() -> None:
    h = Harness()
    challenged(h)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.AUTH


def test_a_second_challenge_to_our_credentials_is_an_auth_failure_not_a_loop() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 401, ("WWW-Authenticate", challenge("n2")))
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.AUTH
    assert failure.code == 401 and "credentials-rejected" in failure.detail
    assert len(h.requests()) == 2


def test_a_stale_nonce_is_answered_once_more_without_a_failure() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 401, ("WWW-Authenticate", challenge("n2", stale=True)))
    again = h.requests()[-1]
    assert len(h.requests()) == 3 and authorization(again)["nonce"] == "n2"
    assert again.get("CSeq") == "3 SUBSCRIBE"
    assert h.delivered == []
    assert h.obs.counts["auth_stale", ""] == 1


def test_a_403_to_a_request_without_credentials_is_a_plain_sip_error() -> None:
    h = Harness(credentials=credentials())
    h.subscribe(1)
    h.answer(h.requests()[-1], 403)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.SIP_ERROR


def test_a_403_to_our_credentials_is_an_auth_failure() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 403)
    [failure] = h.delivered
    assert isinstance(failure, Failure) and failure.kind is FailureKind.AUTH


def test_secrets_never_reach_a_status_message() -> None:
    h = Harness(credentials=credentials())
    retry = challenged(h)
    h.answer(retry, 401, ("WWW-Authenticate", challenge("n2")))
    assert PASSWORD not in repr(h.delivered)


def test_new_credentials_on_sighup_answer_the_next_challenge() -> None:
    h = Harness(credentials=credentials(realm="elsewhere"))
    challenged(h)
    h.engine.set_credentials(credentials())
    h.advance(130)  # the retry after on_error_retry_time (120 s)
    h.answer(h.requests()[-1], 401, ("WWW-Authenticate", challenge("n9")))
    assert authorization(h.requests()[-1])["nonce"] == "n9"


def test_show_names_the_credential_a_dialog_uses_and_never_the_secret() -> None:
    h = Harness(credentials=credentials())
    challenged(h)
    snap = h.engine.snapshot(1)
    assert snap is not None
    assert snap["credential"] == {"subscriber": SUBSCRIBER, "realms": [REALM]}
    assert PASSWORD not in repr(snap)
