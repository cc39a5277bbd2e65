"""The C client (clients/c) against the real service: qsa-watch is presence-b2b watch.

Every test runs with both builds of the C client (``c_build``): as it ships,
and with -fsanitize=address,undefined, where any memory error, leak or
undefined behaviour on the way fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from presence_b2b.toml_writer import toml_tables
from tests.cclient.build import CBuild
from tests.e2e.conftest import SCENARIOS, ServiceFactory
from tests.e2e.helpers import dialogs_for, record_at, wait_dialogs, wait_unsubscribed
from tests.e2e.service import ServiceProcess, cli_command, wait_for
from tests.peers.fixtures import SippUasFactory
from tests.peers.sipp import SippProcess

pytestmark = pytest.mark.integration

SUBSCRIBER = "sip:watcher@example.com"


def watch_args(record: str, socket: str, *extra: str) -> list[str]:
    return [record, "--subscriber", SUBSCRIBER, "--control-socket", socket, "--json", *extra]


def run(cmd: Sequence[str], build: CBuild | None = None) -> subprocess.CompletedProcess[str]:
    env = build.env() if build is not None else None
    done = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=60, check=False, env=env
    )
    if build is not None:
        build.check_clean(done.stderr)
    return done


def python_watch(*args: str) -> subprocess.CompletedProcess[str]:
    return run([*cli_command(), "watch", *args])


def c_watch(build: CBuild, *args: str) -> subprocess.CompletedProcess[str]:
    return run([build.watch, *args], build)


def wait_forgotten(svc: ServiceProcess) -> None:
    wait_for("no subscriptions left in the service", lambda: svc.admin("list") == [])


def test_c_watch_prints_the_same_json_lines_as_the_python_watch(
    c_build: CBuild, service: ServiceFactory, sipp_uas: SippUasFactory
) -> None:
    svc = service(shards=2)
    uas = sipp_uas(
        str(SCENARIOS / "uas_two_notifies.xml"),
        calls=2,
        recv_timeout_ms=60_000,
        expires=60,
        note="at lunch",
        note2="in a meeting",
    )
    record = record_at(uas, "ivy")
    args = watch_args(record, svc.control_socket, "--count", "2", "--timeout", "30")

    py = python_watch(*args)
    assert py.returncode == 0, py.stderr
    wait_forgotten(svc)
    c = c_watch(c_build, *args)
    assert c.returncode == 0, c.stderr

    assert len(py.stdout.splitlines()) == 2
    assert c.stdout == py.stdout
    # Leaving, the C watch ends its subscription too: both dialogs see Expires: 0.
    dialogs = wait_dialogs(uas, record, SUBSCRIBER, count=2)
    wait_unsubscribed(uas, [d.call_id for d in dialogs])
    uas.expect_success(timeout=15)


def test_c_watch_prints_the_same_refusal_as_the_python_watch(
    c_build: CBuild, service: ServiceFactory
) -> None:
    svc = service(shards=2)
    args = watch_args("not a uri", svc.control_socket, "--timeout", "2")

    py = python_watch(*args)
    c = c_watch(c_build, *args)

    (line,) = py.stdout.splitlines()
    assert (json.loads(line)["kind"], json.loads(line)["error_kind"]) == ("error", "refused")
    assert c.stdout == py.stdout
    assert c.returncode == py.returncode == 0


def test_c_watch_exits_1_when_the_timeout_comes_before_the_count(
    c_build: CBuild, service: ServiceFactory, hold_uas: Callable[..., SippProcess]
) -> None:
    svc = service(shards=1)
    uas = hold_uas(calls=1)
    record = record_at(uas, "kim")

    c = c_watch(c_build, *watch_args(record, svc.control_socket, "--count", "2", "--timeout", "3"))

    assert c.returncode == 1, c.stderr
    (line,) = c.stdout.splitlines()
    assert (json.loads(line)["state"], json.loads(line)["basic"]) == ("active", "open")
    assert "timeout after 3 s with 1 of 2 statuses" in c.stderr


def test_c_watch_takes_the_control_socket_from_the_service_configuration(
    c_build: CBuild, service: ServiceFactory, hold_uas: Callable[..., SippProcess]
) -> None:
    svc = service(shards=1)
    uas = hold_uas(calls=1)
    record = record_at(uas, "max")

    c = c_watch(c_build, record, "--subscriber", SUBSCRIBER, "--config", str(svc.config_path),
                "--json", "--count", "1", "--timeout", "20")  # fmt: skip

    assert c.returncode == 0, c.stderr
    (line,) = c.stdout.splitlines()
    assert (json.loads(line)["record"], json.loads(line)["state"]) == (record, "active")


def test_c_watch_against_a_missing_socket_exits_2(c_build: CBuild, tmp_path: Path) -> None:
    c = c_watch(c_build, *watch_args("sip:nobody@127.0.0.1", str(tmp_path / "no-such.sock")))

    assert c.returncode == 2
    assert "no-such.sock" in c.stderr
    assert c.stdout == ""


def test_c_watch_reconnects_and_replays_its_subscription_after_a_service_restart(
    c_build: CBuild, service: ServiceFactory, hold_uas: Callable[..., SippProcess]
) -> None:
    first = service(shards=2)
    uas = hold_uas(calls=2)
    record = record_at(uas, "lee")
    proc = subprocess.Popen(
        [c_build.watch, *watch_args(record, first.control_socket)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c_build.env(),
    )
    try:
        assert proc.stdout is not None
        before = json.loads(proc.stdout.readline())
        assert (before["id"], before["state"], before["basic"]) == (1, "active", "open")

        assert first.stop() == 0
        second = service(shards=2, start=False)
        second.control_socket = first.control_socket  # a new service on the same socket
        second.tables["server"]["control_socket"] = first.control_socket
        second.config_path.write_text(toml_tables(second.tables))
        second.start()

        # The replay: the same id, a new dialog with the presence server, and
        # its status (after whatever the old service said while stopping).
        wait_dialogs(uas, record, SUBSCRIBER, count=2, timeout=30)
        seen = []
        while not seen or seen[-1]["state"] != "active":
            line = proc.stdout.readline()
            assert line, f"qsa-watch ended early after {seen}"
            seen.append(json.loads(line))
        assert (seen[-1]["id"], seen[-1]["basic"]) == (1, "open"), seen
        (row,) = second.admin("list")
        assert (row["record"], row["subscriber"]) == (record, SUBSCRIBER)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    c_build.check_clean(stderr)
    assert proc.returncode == 0, stderr
    assert "reconnecting" in stderr
    assert len(dialogs_for(uas, record, SUBSCRIBER)) == 2


def test_c_watch_prints_a_resource_lists_lines_as_the_python_watch(
    c_build: CBuild, service: ServiceFactory, sipp_uas: SippUasFactory
) -> None:
    svc = service(shards=1)
    outputs = []
    for _ in range(2):  # the same list server twice: once for each watch
        uas = sipp_uas("uas_rlmi", recv_timeout_ms=60_000, expires=60)
        args = watch_args(
            record_at(uas, "friends"), svc.control_socket, "--event", "presence",
            "--count", "3", "--timeout", "30",
        )
        done = python_watch(*args) if not outputs else c_watch(c_build, *args)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.replace(str(uas.port), "PORT"))
        wait_forgotten(svc)
    py, c = outputs
    assert len(py.splitlines()) == 3 and '"resource": "sip:bob@example.com"' in py
    assert c == py
