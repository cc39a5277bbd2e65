"""A configuration with an unknown key or a bad value stops the service before it starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from presence_b2b.toml_writer import toml_tables
from tests.e2e.service import cli_command

pytestmark = pytest.mark.integration

BAD = [
    pytest.param({"sip": {"prot": 5070}}, "sip.prot", "unknown key", id="unknown-key"),
    pytest.param({"bogus": {"x": 1}}, "bogus", "unknown table", id="unknown-table"),
    pytest.param(
        {"presence_b2b": {"wait_for_term_notify": -1}},
        "presence_b2b.wait_for_term_notify",
        ">= 0",
        id="negative-wait",
    ),
    pytest.param({"sip": {"t1": "fast"}}, "sip.t1", "must be a number", id="string-for-number"),
    pytest.param({"sip": {"port": 70000}}, "sip.port", "1..65535", id="port-out-of-range"),
    pytest.param(
        {"presence_b2b": {"presence_route": "<sip:p.example.com;lr"}},
        "presence_b2b.presence_route",
        "Route header text",
        id="unterminated-route",
    ),
    pytest.param(
        {"presence_b2b": {"presence_outbound_proxy": "sip:proxy:99999"}},
        "presence_b2b.presence_outbound_proxy",
        "bare SIP URI",
        id="proxy-port-out-of-range",
    ),
    pytest.param(
        {"presence_b2b": {"additional_presence_headers": "P-Bad Name: x\r\n"}},
        "presence_b2b.additional_presence_headers",
        "bad header name",
        id="header-name-not-a-token",
    ),
    pytest.param(
        {"presence_b2b": {"additional_presence_headers": "i: my-own-call-id\r\n"}},
        "presence_b2b.additional_presence_headers",
        "must not set Call-ID",
        id="header-the-stack-writes",
    ),
]


def _run(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _write(tmp_path: Path, tables: dict[str, dict[str, object]]) -> Path:
    path = tmp_path / "presence-b2b.toml"
    socket = str(tmp_path / "qsa.sock")
    base: dict[str, dict[str, object]] = {
        "server": {"shards": 1, "control_socket": socket},
        "metrics": {"listen": ""},
    }
    for name, table in tables.items():
        base.setdefault(name, {}).update(table)
    path.write_text(toml_tables(base))
    return path


@pytest.mark.parametrize(("tables", "key", "why"), BAD)
def test_serve_refuses_a_bad_config_naming_the_key(tmp_path, tables, key, why):
    path = _write(tmp_path, tables)
    out = _run("serve", "--config", str(path))
    assert out.returncode != 0
    assert key in out.stderr and why in out.stderr, out.stderr
    assert not (tmp_path / "qsa.sock").exists(), "nothing was started"


@pytest.mark.parametrize(("tables", "key", "why"), BAD)
def test_check_config_refuses_a_bad_config_naming_the_key(tmp_path, tables, key, why):
    path = _write(tmp_path, tables)
    out = _run("check-config", str(path))
    assert out.returncode != 0
    assert key in out.stderr and why in out.stderr, out.stderr


def test_check_config_accepts_a_good_config(tmp_path):
    path = _write(tmp_path, {"presence_b2b": {"wait_for_term_notify": 5}})
    out = _run("check-config", str(path))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_serve_refuses_a_bad_command_line_override_naming_the_key(tmp_path):
    path = _write(tmp_path, {})
    out = _run("serve", "--config", str(path), "--sip-port", "0")
    assert out.returncode != 0
    assert "sip.port" in out.stderr, out.stderr


def test_serve_refuses_a_file_that_is_not_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[sip\nport = 1\n")
    out = _run("serve", "--config", str(path))
    assert out.returncode != 0
    assert "not valid TOML" in out.stderr, out.stderr
