"""A client process that dies without a word still has its dialogs ended."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.e2e.helpers import record_at, wait_dialogs, wait_unsubscribed
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from presence_b2b.ipc.client import BlockingQsaClient

    path, pairs = sys.argv[1], json.loads(sys.argv[2])
    client = BlockingQsaClient(path, name="doomed")
    ids = {client.subscribe(record, subscriber) for record, subscriber in pairs}
    while ids:
        event = client.get(30)
        if event is None:
            sys.exit("no status within 30 s")
        if event.kind == "status" and event.message.state == "active":
            ids.discard(event.id)
    print("active", flush=True)
    time.sleep(120)
    """
)


def test_sigkilled_client_process_has_every_dialog_unsubscribed(service, hold_uas):
    svc = service(shards=2)
    uas = hold_uas(calls=2)
    record = record_at(uas, "dave")
    pairs = [(record, svc.pair_on_shard(shard, record, "orphan")) for shard in (0, 1)]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, svc.control_socket, json.dumps(pairs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "active", proc.stderr.read() if proc.stderr else ""
        dialogs = [wait_dialogs(uas, r, s)[0] for r, s in pairs]
        assert len(svc.admin("clients")) == 1

        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

        wait_unsubscribed(uas, [d.call_id for d in dialogs])
        wait_for("the client gone from ctl clients", lambda: svc.admin("clients") == [])
        wait_for("no subscriptions left", lambda: svc.admin("list") == [])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
