"""Digest authentication through ``presence-b2b serve``: a credentials file is
read at start, must not be readable by others, and answers a challenging server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from presence_b2b.toml_writer import toml_tables
from tests.e2e.helpers import record_at, watch_json
from tests.e2e.service import cli_command

pytestmark = pytest.mark.integration

SUBSCRIBER = "sip:watcher@127.0.0.1"


def credentials_file(directory: Path, password: str = "secret", mode: int = 0o600) -> Path:
    path = directory / "credentials.toml"
    path.write_text(
        f'[[credential]]\nsubscriber = "{SUBSCRIBER}"\npassword = "{password}"\n'
    )
    path.chmod(mode)
    return path


def first_state(control_socket: str, record: str) -> str:
    """The state of the first status ``watch`` prints for ``record``."""
    code, lines, stderr = watch_json(control_socket, record, subscriber=SUBSCRIBER, count=1)
    assert code == 0, stderr
    return str(lines[0]["state"])


def test_serve_refuses_a_credentials_file_readable_by_others_naming_it(tmp_path):
    creds = credentials_file(tmp_path, mode=0o644)
    config = tmp_path / "presence-b2b.toml"
    config.write_text(
        toml_tables({
            "server": {"shards": 1, "control_socket": str(tmp_path / "qsa.sock")},
            "metrics": {"listen": ""},
            "auth": {"credentials_file": str(creds)},
        })
    )
    out = subprocess.run(
        [*cli_command(), "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert out.returncode != 0
    assert str(creds) in out.stderr and "readable by others" in out.stderr, out.stderr
    assert not (tmp_path / "qsa.sock").exists(), "nothing was started"


def test_a_challenging_server_is_answered_with_the_credentials_file(service, sipp_uas, tmp_path):
    creds = credentials_file(tmp_path)
    svc = service(shards=1, config={"auth": {"credentials_file": str(creds)}})
    uas = sipp_uas(
        "uas_auth_refresh_nonce_reuse", username="watcher", password="secret", expires=60
    )
    assert first_state(svc.control_socket, record_at(uas, "presentity")) == "active"
    assert uas.count_sent(401) == 1
    assert "secret" not in svc.stderr()


def test_sighup_reads_new_credentials(service, sipp_uas, tmp_path):
    creds = credentials_file(tmp_path, password="old-wrong")
    svc = service(
        shards=1,
        config={
            "auth": {"credentials_file": str(creds)},
            "presence_b2b": {"on_error_retry_time": 2},
        },
    )
    credentials_file(tmp_path, password="secret")
    os.kill(svc.pid, signal.SIGHUP)
    # The supervisor checks the file, then tells the shards over their channels,
    # ahead of any subscribe that comes after.
    deadline = time.monotonic() + 10
    while "SIGHUP: configuration reloaded" not in svc.stderr():
        assert time.monotonic() < deadline, svc.stderr()
        time.sleep(0.05)
    uas = sipp_uas(
        "uas_auth_refresh_nonce_reuse", username="watcher", password="secret", expires=60
    )
    assert first_state(svc.control_socket, record_at(uas, "presentity")) == "active"
