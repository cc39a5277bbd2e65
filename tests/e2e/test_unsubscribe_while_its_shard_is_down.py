"""An unsubscribe that arrives while its shard is down still gets its final status,
and the dialog the restarted shard takes back from its store ends at once."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.e2e.helpers import (
    is_open_with,
    is_status,
    next_event,
    record_at,
    wait_stored,
    wait_unsubscribed,
)
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


def _unsubscribe_while_down(svc, client, sub_id: int) -> None:
    """SIGKILL the only shard, keep it down, unsubscribe, let it come back."""
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


def test_unsubscribe_while_the_shard_is_down_is_answered_once_it_is_back(
    service, clients, hold_uas
):
    # No dialog store: the shard has nothing to take back (the next test has one).
    svc = service(shards=1, config={"store": {"url": ""}})
    uas = hold_uas(calls=2)
    client = clients(svc)
    sub_id = client.subscribe(record_at(uas, "liz"), "sip:watcher@example.com")
    next_event(client, "the first status", is_open_with("at lunch"))

    _unsubscribe_while_down(svc, client, sub_id)
    event = next_event(client, "the final status", lambda e: e.id == sub_id)
    assert is_status("terminated", "unsubscribed")(event)
    assert sub_id not in client.client.subscriptions
    assert svc.admin("list") == [], "the shard did not set the dialog up again"


def test_unsubscribe_while_the_shard_is_down_ends_the_dialog_it_takes_back(
    service, clients, hold_uas
):
    svc = service(shards=1)  # with the dialog store
    uas = hold_uas(calls=2)
    client = clients(svc)
    sub_id = client.subscribe(record_at(uas, "liz"), "sip:watcher@example.com")
    next_event(client, "the first status", is_open_with("at lunch"))
    (stored,) = wait_stored(svc, 1)

    _unsubscribe_while_down(svc, client, sub_id)
    event = next_event(client, "the final status", lambda e: e.id == sub_id)
    assert is_status("terminated", "unsubscribed")(event)
    # Long before reattach_grace (60 s): nobody wants the dialog the store gave back.
    wait_unsubscribed(uas, [stored.call_id], timeout=10.0)
    wait_for("the dialog gone", lambda: svc.admin("list") == [], timeout=10.0)
