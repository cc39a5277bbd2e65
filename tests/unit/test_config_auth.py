"""[auth] in the configuration, and check-config refusing a bad credentials file."""

from __future__ import annotations

from pathlib import Path

import pytest
from presence_b2b.cli import main as cli

from presence_b2b import config

CREDENTIALS = '[[credential]]\nsubscriber = "sip:bob@example.com"\npassword = "pw-not-shown"\n'


def write_setup(tmp_path: Path, credentials_file: str, mode: int = 0o600) -> Path:
    creds = tmp_path / "credentials.toml"
    creds.write_text(CREDENTIALS)
    creds.chmod(mode)
    cfg = tmp_path / "presence-b2b.toml"
    cfg.write_text(f'[auth]\ncredentials_file = "{credentials_file}"\n')
    return cfg


def test_no_credentials_file_by_default() -> None:
    assert config.Config().auth.credentials_file == ""


@pytest.mark.parametrize("value", ["/etc/presence-b2b/credentials.toml", "sip-credentials", ""])
def test_an_absolute_path_or_a_bare_name_is_accepted(value: str) -> None:
    assert config.from_mapping({"auth": {"credentials_file": value}}).auth.credentials_file == value


@pytest.mark.parametrize("value", ["etc/credentials.toml", 7])
def test_a_relative_path_or_a_non_string_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(config.ConfigError, match=r"^auth\.credentials_file: "):
        config.from_mapping({"auth": {"credentials_file": value}})


def test_check_config_loads_the_credentials_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_setup(tmp_path, str(tmp_path / "credentials.toml"))
    assert cli.main(["check-config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == f"{cfg}: OK (1 credentials)"


def test_check_config_refuses_a_credentials_file_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_setup(tmp_path, str(tmp_path / "credentials.toml"), mode=0o644)
    with pytest.raises(SystemExit) as info:
        cli.main(["check-config", str(cfg)])
    assert info.value.code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "auth.credentials_file" in err and "readable by others" in err
    assert "pw-not-shown" not in err


def test_check_config_reads_a_bare_name_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_setup(tmp_path, "credentials.toml")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert cli.main(["check-config", str(cfg)]) == 0
    assert "(1 credentials)" in capsys.readouterr().out


def test_serve_stops_before_starting_on_a_bad_credentials_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_setup(tmp_path, str(tmp_path / "absent.toml"))
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--config", str(cfg)])
    assert info.value.code == cli.EXIT_CONFIG
    assert "no such file" in capsys.readouterr().err
