"""Client auth manager: 401/407 challenges in, credentials for the retried request out.

It sits between the usage and the requester, like DUM's client auth manager: the
requester shows it every 401, 407 or 403 with the request that got it, and asks
it for the credentials of every later request of the same subscription. One
``ClientAuth`` per subscription (it may outlive a dialog: a nonce is not bound to
one). It is sans-I/O: no clock, randomness injected, and it never logs, so no
secret can reach a log through it.

Rules (RFC 3261 §22, RFC 7616):

* every realm challenged in one response is answered, each with the strongest
  algorithm offered for which a credential exists; a realm that cannot be
  answered refuses the whole response, since a partly answered retry would only
  be challenged again;
* ``stale=true`` gets one retry with the new nonce, and is no failure;
* the last nonce of each realm is reused for the subscription's later requests
  (refreshes, unsubscribe) with the next nonce count, so a refresh costs no extra
  round trip; a fresh challenge to such a request is answered like the first;
* refused: no credential for the subscriber and realm, no algorithm or qop we
  speak, a 401/407 without a challenge (or with one that does not parse), a nonce
  challenged a second time, a second stale challenge in a row, and a 401, 407 or
  403 to credentials just computed from a challenge.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ..sip.digest import (
    Challenge,
    DigestCredential,
    DigestError,
    algorithm_rank,
    authorization_value,
    canonical_algorithm,
    check_answerable,
    digest_response,
    parse_challenges,
    parse_credentials,
)
from ..sip.message import Request, Response, SipParseError

__all__ = [
    "AUTH_HEADERS",
    "AuthRefusal",
    "AuthRetry",
    "ClientAuth",
    "CredentialLookup",
    "RefusalReason",
    "set_auth_headers",
]

#: The headers this layer owns on an outgoing request.
AUTH_HEADERS = ("Authorization", "Proxy-Authorization")
#: Nonces remembered per realm to refuse one challenged twice.
_SEEN_NONCES = 8
_CNONCE_BYTES = 16


class CredentialLookup(Protocol):
    """Where credentials come from (``presence_b2b.credentials.CredentialStore``)."""

    def lookup(self, subscriber: str, realm: str) -> DigestCredential | None: ...


class RefusalReason(StrEnum):
    """Why a challenge is not answered; also the ``reason`` label of
    ``presence_b2b_auth_failures_total``."""

    NO_CHALLENGE = "no-challenge"  # a 401/407 with no Digest challenge at all
    MALFORMED = "malformed-challenge"  # a challenge header that does not parse
    NO_CREDENTIAL = "no-credential"  # nothing for this subscriber and realm
    UNSUPPORTED = "unsupported-algorithm"  # no offered algorithm/qop we can answer
    NONCE_REUSED = "nonce-rechallenged"  # the same nonce challenged again
    STALE_AGAIN = "stale-again"  # stale=true to the answer of a stale challenge
    REJECTED = "credentials-rejected"  # 401/407/403 to credentials just computed


@dataclass(frozen=True, slots=True)
class AuthRetry:
    """Send the request again (new CSeq and branch, same method, URI and body) with
    exactly these authentication headers: ``set_auth_headers(retry, headers)``.

    `answered` lists (code, algorithm) per realm answered, for the metrics;
    `stale` is True when only stale nonces were renewed (no failure to count)."""

    headers: tuple[tuple[str, str], ...]
    answered: tuple[tuple[int, str], ...]
    stale: bool = False


@dataclass(frozen=True, slots=True)
class AuthRefusal:
    """The challenge is not answered; the subscription fails with kind ``auth``.

    `code` is the response's status (401, 407 or 403), `realm` the realm refused
    (None when no realm is known). `detail` is for the status message and logs: it
    names realms and algorithms, never a secret."""

    reason: RefusalReason
    code: int
    realm: str | None
    detail: str

    def failure_detail(self) -> str:
        """The text of the consumer's ``Failure.detail``."""
        realm = f" (realm {self.realm!r})" if self.realm is not None else ""
        return f"{self.reason}{realm}: {self.detail}"


@dataclass(slots=True)
class _Nonce:
    """What a realm's last answered challenge lets later requests reuse."""

    challenge: Challenge
    credential: DigestCredential = field(repr=False)
    cnonce: str
    nc: int = 0
    from_stale: bool = False


def set_auth_headers(request: Request, headers: Iterable[tuple[str, str]]) -> None:
    """Replace the request's Authorization and Proxy-Authorization lines by `headers`."""
    for name in AUTH_HEADERS:
        request.remove(name)
    for name, value in headers:
        request.add(name, value)


class ClientAuth:
    """The auth state of one subscription: the last nonce per realm and what was
    already tried. See the module docstring for the rules."""

    __slots__ = ("_credentials", "_nonces", "_random", "_seen", "subscriber")

    def __init__(
        self,
        subscriber: str,
        credentials: CredentialLookup,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.subscriber = subscriber
        self._credentials = credentials
        self._random = random_bytes
        #: (proxy?, realm) -> the nonce later requests reuse.
        self._nonces: dict[tuple[bool, str], _Nonce] = {}
        #: (proxy?, realm) -> nonces already answered after a challenge.
        self._seen: dict[tuple[bool, str], deque[str]] = {}

    def __repr__(self) -> str:
        realms = ", ".join(f"{'proxy ' if p else ''}{r!r}" for p, r in self._nonces)
        return f"<ClientAuth {self.subscriber} realms=[{realms}]>"

    # ------------------------------------------------------------------ API

    def on_response(self, request: Request, response: Response) -> AuthRetry | AuthRefusal | None:
        """`request` got `response`. A 401/407 gives an AuthRetry or an AuthRefusal;
        a 403 to a request that carried credentials gives an AuthRefusal; anything
        else is not an auth matter and gives None."""
        code = response.status
        if code == 403:
            sent = _sent_credentials(request)
            if not sent:
                return None
            realm = next(iter(sent))[1]
            return AuthRefusal(RefusalReason.REJECTED, 403, realm, "403 to our credentials")
        if code not in (401, 407):
            return None
        try:
            challenges = parse_challenges(
                response.get_all("WWW-Authenticate"), proxy=False
            ) + parse_challenges(response.get_all("Proxy-Authenticate"), proxy=True)
        except SipParseError as exc:
            return AuthRefusal(RefusalReason.MALFORMED, code, None, str(exc))
        by_realm: dict[tuple[bool, str], list[Challenge]] = {}
        for challenge in challenges:
            if challenge.is_digest:
                by_realm.setdefault((challenge.proxy, challenge.realm), []).append(challenge)
        if not by_realm:
            schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none"
            return AuthRefusal(
                RefusalReason.NO_CHALLENGE, code, None, f"no Digest challenge (schemes: {schemes})"
            )
        sent = _sent_credentials(request)
        fresh: dict[tuple[bool, str], _Nonce] = {}
        all_stale = True
        for key, offered in by_realm.items():
            outcome = self._answer_realm(code, key, offered, sent.get(key))
            if isinstance(outcome, AuthRefusal):
                return outcome
            fresh[key] = outcome
            all_stale = all_stale and outcome.from_stale
        for key, state in fresh.items():
            self._nonces[key] = state
            seen = self._seen.setdefault(key, deque(maxlen=_SEEN_NONCES))
            seen.append(state.challenge.nonce)
        answered = tuple(
            (code, canonical_algorithm(state.challenge.algorithm) or "other")
            for state in fresh.values()
        )
        return AuthRetry(tuple(self._headers(request)), answered, stale=all_stale)

    def authorize(self, request: Request) -> list[tuple[str, str]]:
        """Credentials for a new request of this subscription (a refresh, an
        unsubscribe, a new dialog's SUBSCRIBE): the last nonce of every realm with
        its next nonce count. Empty before any challenge. Apply them with
        ``set_auth_headers``."""
        return self._headers(request)

    def realms(self) -> list[str]:
        """The realms answered so far (``proxy:`` before a proxy's): what
        ``ctl show`` names, never a secret."""
        return [f"proxy:{realm}" if proxy else realm for proxy, realm in self._nonces]

    def forget(self) -> None:
        """Drop every nonce (e.g. when the credentials file changed)."""
        self._nonces.clear()
        self._seen.clear()

    # ------------------------------------------------------------- internals

    def _answer_realm(
        self,
        code: int,
        key: tuple[bool, str],
        offered: Sequence[Challenge],
        sent: tuple[str, int | None] | None,
    ) -> _Nonce | AuthRefusal:
        realm = key[1]
        credential = self._credentials.lookup(self.subscriber, realm)
        if credential is None:
            return AuthRefusal(
                RefusalReason.NO_CREDENTIAL, code, realm, f"no credential for {self.subscriber}"
            )
        known = [c for c in offered if algorithm_rank(c.algorithm) is not None]
        ranked = sorted(known, key=lambda c: algorithm_rank(c.algorithm) or 0, reverse=True)
        chosen: Challenge | None = None
        for challenge in ranked:
            try:
                check_answerable(challenge, credential)
            except DigestError:
                continue
            chosen = challenge
            break
        if chosen is None:
            offers = ", ".join(f"{c.algorithm} qop={','.join(c.qop) or '-'}" for c in offered)
            return AuthRefusal(
                RefusalReason.UNSUPPORTED, code, realm, f"cannot answer any of: {offers}"[:200]
            )
        previous = self._nonces.get(key)
        first_use = sent is not None and self._first_use(previous, sent)
        if first_use and not chosen.stale:
            return AuthRefusal(
                RefusalReason.REJECTED, code, realm, f"{code} to the answer of a challenge"
            )
        if chosen.nonce in self._seen.get(key, ()):
            return AuthRefusal(
                RefusalReason.NONCE_REUSED, code, realm, "the same nonce was challenged again"
            )
        if chosen.stale and first_use and previous is not None and previous.from_stale:
            return AuthRefusal(RefusalReason.STALE_AGAIN, code, realm, "stale nonce twice in a row")
        cnonce = self._random(_CNONCE_BYTES).hex()
        return _Nonce(chosen, credential, cnonce, from_stale=chosen.stale and sent is not None)

    @staticmethod
    def _first_use(previous: _Nonce | None, sent: tuple[str, int | None]) -> bool:
        """Whether the request's credentials were the answer to a challenge (nonce
        count 1) rather than a reuse of a cached nonce."""
        nonce, nc = sent
        if nc is not None:
            return nc == 1
        return previous is not None and previous.challenge.nonce == nonce and previous.nc <= 1

    def _headers(self, request: Request) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for (proxy, _), state in self._nonces.items():
            state.nc += 1
            params = digest_response(
                state.challenge,
                state.credential,
                method=request.method,
                uri=request.uri,
                body=request.body,
                cnonce=state.cnonce,
                nc=state.nc,
            )
            out.append((AUTH_HEADERS[proxy], authorization_value(params)))
        return out


def _sent_credentials(request: Request) -> dict[tuple[bool, str], tuple[str, int | None]]:
    """(proxy?, realm) -> (nonce, nc) of the Digest credentials a request carried."""
    out: dict[tuple[bool, str], tuple[str, int | None]] = {}
    for proxy, name in enumerate(AUTH_HEADERS):
        for value in request.get_all(name):
            try:
                creds = parse_credentials(value)
            except SipParseError:
                continue
            if not creds.is_digest:
                continue
            nc_text = creds.params.get("nc")
            try:
                nc = int(nc_text, 16) if nc_text is not None else None
            except ValueError:
                nc = None
            out[(bool(proxy), creds.realm)] = (creds.nonce, nc)
    return out
