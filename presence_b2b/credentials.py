"""The credentials file: digest passwords or HA1s per subscriber and realm.

A TOML file of ``[[credential]]`` tables, kept apart from the configuration so
the configuration can stay world-readable and be shown in a bug report::

    [[credential]]
    subscriber = "sip:bob@example.com"   # whose SUBSCRIBEs this answers for
    realm = "example.com"                # optional: any realm
    username = "bob"                     # optional: the user part of subscriber
    password = "..."                     # or ha1_md5 = "..." or ha1_sha256 = "..."

The file is refused when others may read it (mode & 0o007), and every bad entry
is named in one error, by position and subscriber; a secret value never appears
in an error, a repr or a log line.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sip.digest import DigestCredential, Secret
from .sip.headers import parse_uri
from .sip.message import SipParseError

__all__ = [
    "CREDENTIALS_DIRECTORY",
    "CredentialEntry",
    "CredentialStore",
    "CredentialsError",
    "load_credentials",
    "resolve_credentials_path",
    "store_from_mapping",
]

#: systemd's LoadCredential= puts the file in the directory this variable names.
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"

_KEYS = frozenset({"subscriber", "realm", "username", "password", "ha1_md5", "ha1_sha256"})
#: Secret key -> (base algorithm, hex digits of its HA1); None for the password.
_SECRETS: dict[str, tuple[str, int] | None] = {
    "password": None,
    "ha1_md5": ("MD5", 32),
    "ha1_sha256": ("SHA-256", 64),
}


class CredentialsError(ValueError):
    """The credentials file cannot be used; the message names the file and every
    bad entry (never a secret)."""


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    """One ``[[credential]]`` table, checked. `realm` None matches any realm."""

    subscriber: str
    realm: str | None
    credential: DigestCredential = field(repr=False)


def _subscriber_key(uri: str) -> tuple[str, str | None, str, int | None] | None:
    """How subscribers compare: scheme and host case-insensitive, the user part
    exact, URI parameters ignored."""
    try:
        parsed = parse_uri(uri)
    except SipParseError:
        return None
    return (parsed.scheme, parsed.user, parsed.host, parsed.port)


class CredentialStore:
    """Credentials by (subscriber, realm); an entry for the exact realm wins over
    one for any realm. Satisfies ``shard.auth.CredentialLookup``."""

    __slots__ = ("_any_realm", "_by_realm", "source")

    def __init__(self, entries: list[CredentialEntry], source: str = "") -> None:
        self.source = source
        self._by_realm: dict[tuple[object, str], DigestCredential] = {}
        self._any_realm: dict[object, DigestCredential] = {}
        for entry in entries:
            key = _subscriber_key(entry.subscriber)
            if entry.realm is None:
                self._any_realm[key] = entry.credential
            else:
                self._by_realm[(key, entry.realm)] = entry.credential

    def lookup(self, subscriber: str, realm: str) -> DigestCredential | None:
        """The credential to answer `realm`'s challenge as `subscriber`, or None."""
        key = _subscriber_key(subscriber)
        if key is None:
            return None
        return self._by_realm.get((key, realm)) or self._any_realm.get(key)

    def __len__(self) -> int:
        return len(self._by_realm) + len(self._any_realm)

    def __repr__(self) -> str:
        return f"<CredentialStore {self.source or 'in memory'}: {len(self)} entries>"


def _check_text(value: Any, key: str) -> str | None:
    """Problem with a string value, worded without showing the value."""
    if not isinstance(value, str):
        return f"{key} must be a string"
    if not value:
        return f"{key} must not be empty"
    if any(c in value for c in "\r\n\0"):
        return f"{key} must not contain CR, LF or NUL"
    return None


def _entry(table: Any) -> tuple[CredentialEntry | None, list[str]]:
    """Check one table; the problems are worded without any secret value."""
    if not isinstance(table, Mapping):
        return None, ["must be a table"]
    problems = [f"unknown key {k!r}" for k in table if k not in _KEYS]
    subscriber = table.get("subscriber")
    user: str | None = None
    if subscriber is None:
        problems.append("subscriber is missing")
    elif problem := _check_text(subscriber, "subscriber"):
        problems.append(problem)
    else:
        try:
            user = parse_uri(subscriber).user
        except SipParseError:
            problems.append("subscriber must be a sip: or sips: URI")
    realm = table.get("realm")
    if realm is not None and (problem := _check_text(realm, "realm")):
        problems.append(problem)
    username = table.get("username")
    if username is not None:
        if problem := _check_text(username, "username"):
            problems.append(problem)
    elif isinstance(subscriber, str) and not user:
        problems.append("username is needed: subscriber has no user part")
    given = [k for k in _SECRETS if k in table]
    if len(given) != 1:
        problems.append("needs exactly one of password, ha1_md5, ha1_sha256")
    for key in given:
        value = table[key]
        if problem := _check_text(value, key):
            problems.append(problem)
            continue
        spec = _SECRETS[key]
        if spec is None:
            continue
        if len(value) != spec[1] or any(c not in "0123456789abcdefABCDEF" for c in value):
            problems.append(f"{key} must be {spec[1]} hex digits")
        if realm is None:
            problems.append(f"{key} needs a realm: the hash covers it")
    if problems:
        return None, problems
    secret_key = given[0]
    secret = Secret(table[secret_key])
    name = username if username is not None else user
    assert name is not None and isinstance(subscriber, str)
    spec = _SECRETS[secret_key]
    credential = (
        DigestCredential(name, password=secret)
        if spec is None
        else DigestCredential(name, ha1={spec[0]: secret})
    )
    return CredentialEntry(subscriber, realm, credential), []


def store_from_mapping(data: Mapping[str, Any], source: str = "credentials") -> CredentialStore:
    """Check parsed TOML and build the store; CredentialsError lists every bad entry."""
    problems: list[str] = [
        f"{source}: unknown table {k!r} (only [[credential]] tables)"
        for k in data
        if k != "credential"
    ]
    tables = data.get("credential", [])
    if not isinstance(tables, list):
        problems.append(f"{source}: credential must be an array of tables ([[credential]])")
        tables = []
    entries: list[CredentialEntry] = []
    seen: dict[tuple[object, str | None], int] = {}
    for i, table in enumerate(tables, start=1):
        entry, bad = _entry(table)
        who = table.get("subscriber") if isinstance(table, Mapping) else None
        label = f"{source}: credential {i}" + (
            f" ({who})" if isinstance(who, str) and not _check_text(who, "") else ""
        )
        problems.extend(f"{label}: {p}" for p in bad)
        if entry is None:
            continue
        key = (_subscriber_key(entry.subscriber), entry.realm)
        if key in seen:
            realm = "any realm" if entry.realm is None else f"realm {entry.realm!r}"
            problems.append(f"{label}: same subscriber and {realm} as credential {seen[key]}")
            continue
        seen[key] = i
        entries.append(entry)
    if problems:
        raise CredentialsError("\n".join(problems))
    return CredentialStore(entries, source)


def resolve_credentials_path(setting: str, environ: Mapping[str, str] | None = None) -> Path:
    """``auth.credentials_file`` as a path: an absolute path as it is, a bare name
    inside ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=NAME:SOURCE``)."""
    if os.path.isabs(setting):
        return Path(setting)
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_DIRECTORY)
    if not directory:
        raise CredentialsError(
            f"{setting}: a bare file name needs ${CREDENTIALS_DIRECTORY} "
            "(systemd LoadCredential=); give an absolute path otherwise"
        )
    return Path(directory) / setting


def load_credentials(path: str | os.PathLike[str]) -> CredentialStore:
    """Read, check and index the credentials file at `path`."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CredentialsError(f"{source}: not a regular file")
            if st.st_mode & 0o007:
                raise CredentialsError(
                    f"{source}: readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                    "chmod o-rwx it"
                )
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise CredentialsError(f"{source}: no such file") from None
    except PermissionError:
        raise CredentialsError(f"{source}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message gives a line and column, never the text itself.
        raise CredentialsError(f"{source}: not valid TOML: {exc}") from None
    return store_from_mapping(data, source)
