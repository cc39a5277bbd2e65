"""HTTP Digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760): challenges in, credentials out.

Pure functions and frozen values only. Which challenge to answer, nonce counts and
when to give up belong to the client auth manager (``shard/auth.py``); this module
parses ``WWW-Authenticate``/``Proxy-Authenticate`` values, computes the digest
response and formats the ``Authorization``/``Proxy-Authorization`` value.

Secrets (a password or a stored HA1) travel as :class:`Secret`, whose repr and str
never show the value, so a credential that ends up in a log line, a traceback or a
test failure shows ``Secret(***)`` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .message import SipParseError

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "DigestCredential",
    "DigestError",
    "Secret",
    "algorithm_rank",
    "authorization_value",
    "canonical_algorithm",
    "check_answerable",
    "digest_response",
    "ha1_of",
    "hash_hex",
    "parse_challenges",
    "parse_credentials",
]

#: Hash function of each base algorithm (RFC 7616 §6.1, RFC 8760 §2).
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}

#: Every algorithm this module answers, weakest first: the order a choice between
#: challenges of one realm follows (RFC 7616 §3.7: prefer the strongest).
ALGORITHMS: tuple[str, ...] = (
    "MD5-sess",
    "MD5",
    "SHA-256-sess",
    "SHA-256",
    "SHA-512-256-sess",
    "SHA-512-256",
)
_RANK = {name.upper(): i for i, name in enumerate(ALGORITHMS)}
_CANONICAL = {name.upper(): name for name in ALGORITHMS}


class DigestError(ValueError):
    """A challenge this module cannot answer (unknown algorithm or qop). The message
    names the offending value, never a secret."""


class Secret:
    """A password or HA1 that must not leak: repr and str hide it, equality compares it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that hashes it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled: it would leave the process in clear")


@dataclass(frozen=True, slots=True)
class DigestCredential:
    """What a digest response needs: the username and either the password (answers
    every algorithm) or the HA1 of one base algorithm (answers that one and its
    -sess form). HA1 = H(username:realm:password) is realm-bound by construction."""

    username: str
    password: Secret | None = None
    #: base algorithm ("MD5", "SHA-256", "SHA-512-256") -> stored HA1 in hex.
    ha1: Mapping[str, Secret] = field(default_factory=dict)

    def supports(self, algorithm: str) -> bool:
        """True when a response for `algorithm` can be computed from this credential."""
        base = _base(algorithm)
        return base in _HASHES and (self.password is not None or base in self.ha1)


def _base(algorithm: str) -> str:
    upper = algorithm.upper()
    return upper[: -len("-SESS")] if upper.endswith("-SESS") else upper


def canonical_algorithm(algorithm: str) -> str | None:
    """The RFC spelling of a supported algorithm ("sha-256" -> "SHA-256"), else None."""
    return _CANONICAL.get(algorithm.upper())


def algorithm_rank(algorithm: str) -> int | None:
    """Strength order of a supported algorithm (higher is stronger), None if unknown."""
    return _RANK.get(algorithm.upper())


def hash_hex(algorithm: str, text: str | bytes) -> str:
    """H(text) in lower-case hex for `algorithm` (the -sess suffix is ignored)."""
    base = _base(algorithm)
    fn = _HASHES.get(base)
    if fn is None:
        raise DigestError(f"unsupported digest algorithm {algorithm[:40]!r}")
    return fn(text.encode("utf-8") if isinstance(text, str) else text)


def ha1_of(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password): the HA1 a server or a credentials file stores."""
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


# ----------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a WWW-Authenticate or Proxy-Authenticate value (RFC 7616 §3.3).

    `params` keeps every parameter as received (names lower-cased, values
    unquoted), unknown ones included, so nothing a server sent is lost. `algorithm`
    is the value as sent, "MD5" when absent (RFC 7616 §3.3); `qop` the offered
    options, lower-cased. `proxy` tells which header it came from, and so which
    header answers it.
    """

    scheme: str
    params: Mapping[str, str]
    proxy: bool = False

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def nonce(self) -> str:
        return self.params.get("nonce", "")

    @property
    def opaque(self) -> str | None:
        return self.params.get("opaque")

    @property
    def algorithm(self) -> str:
        return self.params.get("algorithm") or "MD5"

    @property
    def stale(self) -> bool:
        return self.params.get("stale", "").lower() == "true"

    @property
    def qop(self) -> tuple[str, ...]:
        raw = self.params.get("qop")
        if raw is None:
            return ()
        return tuple(q.strip().lower() for q in raw.split(",") if q.strip())


_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def _bad(message: str) -> SipParseError:
    return SipParseError("header", message)


class _Scanner:
    """Walks one header value: tokens, quoted strings, commas and blanks."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def skip_blanks(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def at_end(self) -> bool:
        self.skip_blanks()
        return self.i >= len(self.text)

    def peek(self) -> str:
        self.skip_blanks()
        return self.text[self.i] if self.i < len(self.text) else ""

    def token(self) -> str:
        self.skip_blanks()
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _TOKEN:
            self.i += 1
        return self.text[start : self.i]

    def token68(self) -> str:
        """A token, or RFC 7235's token68 (base64-like, may end in '=')."""
        start = self.i
        while self.i < len(self.text) and (self.text[self.i] in _TOKEN or self.text[self.i] == "/"):
            self.i += 1
        while self.i < len(self.text) and self.text[self.i] == "=":
            self.i += 1
        return self.text[start : self.i]

    def quoted(self) -> str:
        assert self.text[self.i] == '"'
        self.i += 1
        out: list[str] = []
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch == "\\" and self.i + 1 < len(self.text):
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            if ch == '"':
                self.i += 1
                return "".join(out)
            out.append(ch)
            self.i += 1
        raise _bad("unterminated quoted string in authentication header")

    def value(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        return self.token68()


def _parse_auth_list(value: str, *, proxy: bool) -> list[Challenge]:
    """RFC 7235 §4.1: `1#challenge`, where a challenge is `scheme [params]` and the
    comma separates both challenges and their parameters: a token followed by a
    blank and not by '=' starts the next challenge."""
    scanner = _Scanner(value)
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}

    def finish() -> None:
        if scheme is not None:
            challenges.append(Challenge(scheme, dict(params), proxy))

    while not scanner.at_end():
        if scanner.peek() == ",":
            scanner.i += 1
            continue
        start = scanner.i
        name = scanner.token()
        if not name:
            raise _bad(f"bad authentication header near {value[start : start + 30]!r}")
        if scanner.peek() == "=":
            # `name=value`, unless this is a token68 (`scheme abc==`) that we misread.
            scanner.i += 1
            if scheme is None:
                raise _bad("authentication parameter before any scheme")
            key = name.lower()
            if key in params:
                raise _bad(f"parameter {key!r} repeated in one challenge")
            params[key] = scanner.value()
            continue
        # A bare token: a new challenge's scheme.
        finish()
        scheme, params = name, {}
        after = scanner.peek()
        if after and after != ",":
            # Either the first auth-param or a token68.
            mark = scanner.i
            first = scanner.token()
            if first and scanner.peek() == "=" and not _token68_tail(scanner):
                scanner.i += 1
                params[first.lower()] = scanner.value()
            else:
                scanner.i = mark
                params["token68"] = scanner.token68()
    finish()
    return challenges


def _token68_tail(scanner: _Scanner) -> bool:
    """At a '=': True when it ends a token68 (only '='s then a comma or the end)."""
    j = scanner.i
    text = scanner.text
    while j < len(text) and text[j] == "=":
        j += 1
    while j < len(text) and text[j] in " \t":
        j += 1
    return j >= len(text) or text[j] == ","


def parse_challenges(values: list[str] | str, *, proxy: bool = False) -> list[Challenge]:
    """Every challenge in one or more WWW-Authenticate (or, with `proxy`,
    Proxy-Authenticate) header values, in order. Non-Digest schemes are returned
    too, so a caller can tell "no challenge" from "no challenge we speak".
    Raises SipParseError("header") for a value that does not parse, or a Digest
    challenge without realm or nonce."""
    out: list[Challenge] = []
    for value in [values] if isinstance(values, str) else values:
        for challenge in _parse_auth_list(value, proxy=proxy):
            if challenge.is_digest and ("realm" not in challenge.params or not challenge.nonce):
                raise _bad("Digest challenge without realm or nonce")
            out.append(challenge)
    return out


def parse_credentials(value: str) -> Challenge:
    """An Authorization/Proxy-Authorization value, read with the challenge grammar
    (`Digest username="..", ...`): the manager looks at the nonce and nc it sent."""
    parsed = _parse_auth_list(value, proxy=False)
    if len(parsed) != 1:
        raise _bad("an Authorization value holds exactly one credentials")
    return parsed[0]


# ----------------------------------------------------------------------- answering


def _qop_choice(challenge: Challenge) -> str | None:
    """qop=auth when offered; auth-int only when it is the only one; None for the
    RFC 2069 form (no qop offered)."""
    offered = challenge.qop
    if not offered:
        return None
    if "auth" in offered:
        return "auth"
    if "auth-int" in offered:
        return "auth-int"
    raise DigestError(f"no supported qop in {','.join(offered)[:40]!r}")


def check_answerable(challenge: Challenge, credential: DigestCredential) -> tuple[str, str | None]:
    """(algorithm in RFC spelling, qop to use) for this challenge and credential, or
    DigestError saying why it cannot be answered."""
    algorithm = canonical_algorithm(challenge.algorithm)
    if algorithm is None:
        raise DigestError(f"unsupported digest algorithm {challenge.algorithm[:40]!r}")
    if not credential.supports(algorithm):
        raise DigestError(f"the credential has no password or HA1 for {algorithm}")
    qop = _qop_choice(challenge)
    if algorithm.endswith("-sess") and qop is None:
        # -sess needs a cnonce, and RFC 2069's form has no place to send one.
        raise DigestError(f"{algorithm} offered without qop")
    return algorithm, qop


def digest_response(
    challenge: Challenge,
    credential: DigestCredential,
    *,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str = "",
    nc: int = 1,
) -> dict[str, str]:
    """The credentials' parameters for one request (RFC 7616 §3.4), in the order
    RFC 7616's examples write them. `cnonce` must be fresh per answer when a qop is
    used; `nc` counts the requests sent with this nonce (1 for the first)."""
    algorithm, qop = check_answerable(challenge, credential)
    sess = algorithm.endswith("-sess")
    base = _base(algorithm)
    realm, nonce = challenge.realm, challenge.nonce

    stored = credential.ha1.get(base)
    if credential.password is not None:
        ha1 = ha1_of(base, credential.username, realm, credential.password.reveal())
    else:
        assert stored is not None  # supports() checked it
        ha1 = stored.reveal().lower()
    if sess:
        ha1 = hash_hex(base, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{hash_hex(base, body)}"
    ha2 = hash_hex(base, a2)
    nc_text = f"{nc:08x}"
    if qop is None:
        response = hash_hex(base, f"{ha1}:{nonce}:{ha2}")
    else:
        response = hash_hex(base, f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")

    params: dict[str, str] = {
        "username": credential.username,
        "realm": realm,
        "uri": uri,
        "algorithm": algorithm,
        "nonce": nonce,
    }
    if qop is not None:
        params["nc"] = nc_text
        params["cnonce"] = cnonce
        params["qop"] = qop
    params["response"] = response
    if challenge.opaque is not None:
        params["opaque"] = challenge.opaque
    return params


#: Parameters written as tokens: RFC 7616 §3.4 says algorithm, qop and nc are not quoted.
_UNQUOTED = frozenset({"algorithm", "qop", "nc"})


def _quote(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise DigestError("a digest parameter must not contain CR or LF")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def authorization_value(params: Mapping[str, str]) -> str:
    """`Digest username="..", ...`: the Authorization/Proxy-Authorization value."""
    parts = [f"{k}={v}" if k in _UNQUOTED else f"{k}={_quote(v)}" for k, v in params.items()]
    return "Digest " + ", ".join(parts)
