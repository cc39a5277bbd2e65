"""The systemd unit verifies and stays hardened; sysusers and the example config hold."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from presence_b2b import config

SYSTEMD = Path(__file__).resolve().parents[3] / "systemd"
UNIT = SYSTEMD / "presence-b2b.service"


def directives(path: Path) -> dict[str, list[str]]:
    """Key -> every value it is given (units repeat keys such as SystemCallFilter=)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, val = line.partition("=")
            out.setdefault(key, []).append(val)
    return out


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart= on a binary that exists here, for systemd-analyze."""
    text = UNIT.read_text()
    text, n = re.subn(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M)
    assert n == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed")
    return path


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = need("systemd-analyze")
    copy = runnable_copy(tmp_path)
    result = subprocess.run(
        [tool, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    complaints = [ln for ln in (result.stdout + result.stderr).splitlines() if copy.name in ln]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_unit_exposure_stays_at_or_below_2_0(tmp_path: Path) -> None:
    tool = need("systemd-analyze")
    copy = runnable_copy(tmp_path)
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if "Unknown option" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline security check")
    assert "Overall exposure level" in result.stdout, result.stderr
    assert result.returncode == 0, result.stdout[-400:]


def test_unit_keeps_the_service_contract_and_the_sandbox() -> None:
    d = directives(UNIT)
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30",
        "Restart": "on-failure", "RestartSec": "2", "KillMode": "mixed",
        "ExecReload": "/bin/kill -HUP $MAINPID", "User": "presence-b2b",
        "Group": "presence-b2b", "RuntimeDirectory": "presence-b2b",
        "StateDirectory": "presence-b2b", "ConfigurationDirectory": "presence-b2b",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
        "ProtectHostname": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "UMask": "0027",
    }  # fmt: skip
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert d["ExecStart"][0].endswith(
        "presence-b2b serve --config /etc/presence-b2b/presence-b2b.toml"
    )
    assert d["SystemCallFilter"][0] == "@system-service"
    assert int(d["RuntimeDirectoryMode"][0], 8) & 0o777 == 0o750
    assert "IPAddressDeny" not in d and "IPAddressAllow" not in d
    assert "PrivateUsers" not in d


def test_unit_caps_the_services_memory_and_tasks() -> None:
    d = directives(UNIT)
    assert d["MemoryMax"] == ["4G"]
    assert d["TasksMax"] == ["512"]


def test_stop_timeout_outlasts_the_wait_for_the_terminating_notify() -> None:
    stop = int(directives(UNIT)["TimeoutStopSec"][0])
    assert stop >= config.B2BParams().wait_for_term_notify + 15


def test_sysusers_creates_the_service_user_and_the_clients_group(tmp_path: Path) -> None:
    tool = need("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    subprocess.run(
        [tool, f"--root={tmp_path}", str(SYSTEMD / "presence-b2b.sysusers.conf")],
        check=True, capture_output=True, timeout=60,
    )
    passwd = (tmp_path / "etc/passwd").read_text()
    groups = {ln.split(":")[0] for ln in (tmp_path / "etc/group").read_text().splitlines()}
    assert re.search(r"^presence-b2b:x:\d+:\d+:[^:]*:/var/lib/presence-b2b:/usr/sbin/nologin$",
                     passwd, re.M)
    assert {"presence-b2b", "presence-b2b-clients"} <= groups


def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_example_config", SYSTEMD / "render_example_config.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_config_matches_describe() -> None:
    example = (SYSTEMD / "presence-b2b.toml").read_text()
    assert example == renderer().render(), (
        "regenerate: python systemd/render_example_config.py > systemd/presence-b2b.toml"
    )
    keys = re.findall(r"^#(\w+) = ", example, re.M)
    assert len(keys) == len(config.describe())


def test_example_config_as_shipped_loads_as_the_defaults() -> None:
    data = tomllib.loads((SYSTEMD / "presence-b2b.toml").read_text())
    assert config.from_mapping(data) == config.Config()


def test_every_default_in_the_example_is_accepted_when_uncommented() -> None:
    text = re.sub(r"^#(\w+ = )", r"\1", (SYSTEMD / "presence-b2b.toml").read_text(), flags=re.M)
    assert config.from_mapping(tomllib.loads(text)) == config.Config()
