"""Digest authentication of the engine's SUBSCRIBEs: challenges in, retries out.

The engine shows this layer every 401, 407 and 403 to one of its SUBSCRIBEs
and every new SUBSCRIBE it builds; the per-subscription rules (which realm,
which algorithm, nonce counts, when to give up) live in :class:`ClientAuth`.
What this layer adds is the SIP side of a retry: the same request with the
next CSeq of its dialog, a new branch and the computed credentials (RFC 3261
§22.2: same Call-ID and From tag for an initial SUBSCRIBE), and one place
where the credentials can change on SIGHUP. It is sans-I/O and never logs a
header it built: secrets stay in the request bytes.
"""

from __future__ import annotations

from ..sip import ids
from ..sip.digest import DigestCredential
from ..sip.message import Request, Response, parse_message
from .auth import AuthRefusal, AuthRetry, ClientAuth, CredentialLookup, set_auth_headers
from .observer import EngineObserver
from .usage import RestingUsage, Usage

__all__ = ["NO_CREDENTIALS", "AuthLayer"]

#: Codes this layer has a word in; everything else goes straight to the machine.
AUTH_CODES = frozenset((401, 403, 407))


class _NoCredentials:
    """The lookup without a credentials file: every challenge is refused."""

    def lookup(self, subscriber: str, realm: str) -> DigestCredential | None:
        return None


NO_CREDENTIALS: CredentialLookup = _NoCredentials()


class AuthLayer:
    """The engine's authentication: one :class:`ClientAuth` per challenged
    subscription, all looking credentials up through this object, so a SIGHUP
    that brings new credentials reaches every one of them."""

    __slots__ = ("_credentials", "_obs")

    def __init__(self, credentials: CredentialLookup | None, observer: EngineObserver) -> None:
        self._credentials = credentials or NO_CREDENTIALS
        self._obs = observer

    def lookup(self, subscriber: str, realm: str) -> DigestCredential | None:
        return self._credentials.lookup(subscriber, realm)

    def configure(
        self, credentials: CredentialLookup | None, usages: list[Usage | RestingUsage]
    ) -> None:
        """New credentials (SIGHUP): cached nonces were computed with the old ones."""
        self._credentials = credentials or NO_CREDENTIALS
        for usage in usages:
            if usage.auth is not None:
                usage.auth.forget()

    def authorize(self, usage: Usage, request: Request) -> None:
        """Credentials for a new SUBSCRIBE of a subscription that was challenged
        before: each realm's last nonce with the next count, no round trip."""
        auth = usage.auth
        if auth is None:
            return
        headers = auth.authorize(request)
        if headers:
            set_auth_headers(request, headers)
            self._obs.auth_nonce_reuse()

    def challenged(
        self, usage: Usage, request: Request, response: Response
    ) -> tuple[Request, str] | AuthRefusal | None:
        """What to do with ``response`` to ``request``: a retry to send (with its
        branch), a refusal the subscription fails with, or None when it is no
        auth matter."""
        if response.status not in AUTH_CODES:
            return None
        auth = usage.auth
        if auth is None:
            if response.status == 403:
                return None  # a 403 to a request without credentials is a plain error
            auth = usage.auth = ClientAuth(usage.subscriber, self)
        outcome = auth.on_response(request, response)
        if outcome is None:
            return None
        if isinstance(outcome, AuthRefusal):
            self._obs.auth_failure(str(outcome.reason))
            return outcome
        self._count(outcome)
        retry, branch = next_attempt(request, usage)
        set_auth_headers(retry, outcome.headers)
        return retry, branch

    def _count(self, retry: AuthRetry) -> None:
        if retry.stale:
            self._obs.auth_stale_nonce()
        for code, algorithm in retry.answered:
            self._obs.auth_challenge(code, algorithm)


def next_attempt(request: Request, usage: Usage) -> tuple[Request, str]:
    """``request`` again as a new transaction, and its branch: the next CSeq of
    its dialog (which remembers it, so later requests go above it)."""
    retry = parse_message(request.to_bytes())
    assert isinstance(retry, Request)
    head, _, params = (retry.get("Via") or "").partition(";")
    kept = [p for p in params.split(";") if p and not p.strip().lower().startswith("branch=")]
    branch = ids.new_branch()
    retry.set("Via", ";".join([head, *kept, f"branch={branch}"]))
    number = int((retry.get("CSeq") or "0").split()[0]) + 1
    dialog = usage.dialog
    if dialog is not None:
        number = max(number, dialog.local_cseq + 1)
        dialog.local_cseq = number
    retry.set("CSeq", f"{number} {retry.method}")
    return retry, branch
