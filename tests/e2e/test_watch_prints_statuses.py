"""``presence-b2b watch`` against the running service, as an operator uses it."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import SCENARIOS
from tests.e2e.helpers import record_at, wait_dialogs, wait_unsubscribed
from tests.e2e.service import cli_command

pytestmark = pytest.mark.integration


def test_watch_json_count_2_prints_two_status_lines_and_exits_0(service, sipp_uas):
    svc = service(shards=2)
    uas = sipp_uas(
        str(SCENARIOS / "uas_two_notifies.xml"),
        recv_timeout_ms=60_000,
        expires=60,
        note="at lunch",
        note2="in a meeting",
    )
    record = record_at(uas, "ivy")
    out = subprocess.run(
        [
            *cli_command(),
            "watch",
            record,
            "--subscriber",
            "sip:watcher@example.com",
            "--control-socket",
            svc.control_socket,
            "--json",
            "--count",
            "2",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    statuses = [line for line in lines if line["kind"] == "status"]
    assert len(statuses) == 2, lines
    assert lines == statuses, "only status lines before the count was reached"
    first, second = statuses
    assert (first["state"], first["basic"], first["notes"]) == ("active", "open", ["at lunch"])
    assert (second["state"], second["basic"], second["notes"]) == (
        "active",
        "closed",
        ["in a meeting"],
    )
    for line in statuses:
        assert line["record"] == record and line["entity"] == record
        assert line["subscriber"] == "sip:watcher@example.com"
    # Leaving, watch ends its subscription: the dialog is unsubscribed on the wire.
    (dialog,) = wait_dialogs(uas, record, "sip:watcher@example.com")
    wait_unsubscribed(uas, [dialog.call_id])
    uas.expect_success(timeout=15)


def test_watch_against_a_missing_socket_exits_2(tmp_path):
    out = subprocess.run(
        [
            *cli_command(),
            "watch",
            "sip:nobody@127.0.0.1",
            "--subscriber",
            "sip:watcher@example.com",
            "--control-socket",
            str(tmp_path / "no-such.sock"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert "no-such.sock" in out.stderr
    assert out.stdout == ""
