"""An unsubscribe that arrives while its shard is down still gets its final status."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.e2e.helpers import is_open_with, is_status, next_event, record_at
from tests.e2e.service import wait_for

pytestmark = pytest.mark.integration


def _grab_port(port: int, timeout: float = 5.0) -> socket.socket:
    """Bind 127.0.0.1:port as soon as the dead shard has released it."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def test_unsubscribe_while_the_shard_is_down_is_answered_once_it_is_back(
    service, clients, hold_uas
):
    # No dialog store: a dialog stored before the kill would come back unclaimed
    # and live out reattach_grace (60 s), which is the store's behaviour, not
    # the owed unsubscribe's; whether the row is written before the kill is a race.
    svc = service(shards=1, config={"store": {"url": ""}})
    uas = hold_uas(calls=2)
    client = clients(svc)
    sub_id = client.subscribe(record_at(uas, "liz"), "sip:watcher@example.com")
    next_event(client, "the first status", is_open_with("at lunch"))

    (pid,) = svc.shard_pids().values()
    os.kill(pid, signal.SIGKILL)
    # Holding the shard's SIP port keeps every respawn failing at bind: the shard
    # stays down for as long as the test wants.
    squatter = _grab_port(svc.shard_port(0))
    try:
        wait_for("the shard down", lambda: not svc.stats()["shards"][0]["up"])
        client.unsubscribe(sub_id)
        wait_for(
            "the supervisor to take the unsubscribe", lambda: svc.stats()["subscriptions"] == 0
        )
    finally:
        squatter.close()

    wait_for("the shard back up", lambda: svc.stats()["shards"][0]["up"], timeout=30.0)
    event = next_event(client, "the final status", lambda e: e.id == sub_id)
    assert is_status("terminated", "unsubscribed")(event)
    assert sub_id not in client.client.subscriptions
    assert svc.admin("list") == [], "the shard did not set the dialog up again"
