"""The credentials file: what it accepts, what it refuses and how, and lookups."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from presence_b2b.sip.digest import Secret, ha1_of

from presence_b2b.credentials import (
    CredentialsError,
    load_credentials,
    resolve_credentials_path,
    store_from_mapping,
)

SECRET = "pa55-word-never-shown"
HA1 = ha1_of("MD5", "bob", "example.com", SECRET)


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


GOOD = f"""
[[credential]]
subscriber = "sip:bob@example.com"
password = "{SECRET}"

[[credential]]
subscriber = "sip:bob@example.com"
realm = "example.com"
username = "bob"
ha1_md5 = "{HA1}"
"""


def test_a_good_file_loads_and_is_looked_up_by_subscriber_and_realm(tmp_path: Path) -> None:
    store = load_credentials(write(tmp_path, GOOD))
    assert len(store) == 2
    exact = store.lookup("sip:bob@example.com", "example.com")
    anywhere = store.lookup("sip:bob@example.com", "proxy.example.com")
    assert exact is not None and exact.ha1 == {"MD5": Secret(HA1)}
    assert anywhere is not None and anywhere.password == Secret(SECRET)


def test_the_username_defaults_to_the_user_part_of_the_subscriber() -> None:
    store = store_from_mapping({"credential": [{"subscriber": "sip:carol@x.org", "password": "p"}]})
    credential = store.lookup("sip:carol@x.org", "x.org")
    assert credential is not None and credential.username == "carol"


def test_subscribers_compare_with_case_insensitive_host_and_without_parameters() -> None:
    store = store_from_mapping(
        {"credential": [{"subscriber": "sip:bob@Example.COM", "password": "p"}]}
    )
    assert store.lookup("sip:bob@example.com;transport=udp", "r") is not None
    assert store.lookup("sip:Bob@example.com", "r") is None


def test_an_unknown_subscriber_or_realm_gives_none() -> None:
    store = store_from_mapping(
        {"credential": [{"subscriber": "sip:bob@example.com", "realm": "r", "password": "p"}]}
    )
    assert store.lookup("sip:alice@example.com", "r") is None
    assert store.lookup("sip:bob@example.com", "other") is None
    assert store.lookup("not a uri", "r") is None


@pytest.mark.parametrize("mode", [0o604, 0o601, 0o602, 0o644])
def test_a_file_others_may_access_is_refused_naming_it(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, GOOD, mode)
    with pytest.raises(CredentialsError, match="readable by others") as info:
        load_credentials(path)
    assert str(path) in str(info.value)


def test_a_group_readable_file_is_accepted(tmp_path: Path) -> None:
    assert len(load_credentials(write(tmp_path, GOOD, 0o640))) == 2


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no such file"):
        load_credentials(tmp_path / "absent.toml")


def test_bad_toml_is_refused_without_echoing_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, f"[[credential]]\npassword = {SECRET}\n")
    with pytest.raises(CredentialsError, match="not valid TOML") as info:
        load_credentials(path)
    assert SECRET not in str(info.value)


BAD_ENTRIES = [
    ({"password": "p"}, "subscriber is missing"),
    ({"subscriber": "tel:+123", "password": "p"}, "sip: or sips: URI"),
    ({"subscriber": "sip:example.com", "password": "p"}, "username is needed"),
    ({"subscriber": "sip:b@x"}, "exactly one of"),
    (
        {"subscriber": "sip:b@x", "password": "p", "ha1_md5": "0" * 32, "realm": "r"},
        "exactly one of",
    ),
    ({"subscriber": "sip:b@x", "realm": "r", "ha1_md5": "xyz"}, "ha1_md5 must be 32 hex digits"),
    ({"subscriber": "sip:b@x", "realm": "r", "ha1_sha256": "0" * 32}, "64 hex digits"),
    ({"subscriber": "sip:b@x", "ha1_md5": "0" * 32}, "needs a realm"),
    ({"subscriber": "sip:b@x", "password": 1234}, "password must be a string"),
    ({"subscriber": "sip:b@x", "password": ""}, "password must not be empty"),
    ({"subscriber": "sip:b@x", "password": "p", "pasword": "p"}, "unknown key 'pasword'"),
    ({"subscriber": "sip:b@x", "username": "a\r\nb", "password": "p"}, "CR, LF"),
]


@pytest.mark.parametrize(("table", "problem"), BAD_ENTRIES)
def test_a_bad_entry_is_refused_with_its_problem(table: dict[str, object], problem: str) -> None:
    with pytest.raises(CredentialsError, match=problem):
        store_from_mapping({"credential": [table]})


def test_every_bad_entry_is_named_by_position_and_subscriber_in_one_error() -> None:
    tables = [
        {"subscriber": "sip:ok@x", "password": "p"},
        {"subscriber": "sip:one@x"},
        {"subscriber": "sip:two@x", "ha1_md5": "0" * 32},
    ]
    with pytest.raises(CredentialsError) as info:
        store_from_mapping({"credential": tables}, "creds.toml")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("creds.toml: credential 2 (sip:one@x): ")
    assert lines[1].startswith("creds.toml: credential 3 (sip:two@x): ")


def test_two_entries_for_the_same_subscriber_and_realm_are_refused() -> None:
    tables = [
        {"subscriber": "sip:b@x", "realm": "r", "password": "p"},
        {"subscriber": "sip:b@X", "realm": "r", "password": "q"},
    ]
    with pytest.raises(
        CredentialsError, match=r"credential 2 .*same subscriber and realm 'r' as credential 1"
    ):
        store_from_mapping({"credential": tables})


def test_tables_other_than_credential_are_refused() -> None:
    with pytest.raises(CredentialsError, match="unknown table 'credentials'"):
        store_from_mapping({"credentials": []})


def test_no_error_shows_a_secret() -> None:
    tables = [
        {"subscriber": "sip:b@x", "password": SECRET, "ha1_md5": SECRET, "extra": SECRET},
        {"subscriber": "sip:c@x", "ha1_sha256": SECRET},
    ]
    with pytest.raises(CredentialsError) as info:
        store_from_mapping({"credential": tables})
    assert SECRET not in str(info.value)


def test_a_bare_name_is_read_from_the_systemd_credentials_directory(tmp_path: Path) -> None:
    path = resolve_credentials_path("sip-credentials", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert path == tmp_path / "sip-credentials"


def test_a_bare_name_without_the_credentials_directory_is_refused() -> None:
    with pytest.raises(CredentialsError, match="CREDENTIALS_DIRECTORY"):
        resolve_credentials_path("sip-credentials", {})


def test_an_absolute_path_is_taken_as_it_is() -> None:
    assert resolve_credentials_path("/etc/x.toml", {}) == Path("/etc/x.toml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="permission denied"):
        load_credentials(write(tmp_path, GOOD, 0o000))
