"""What the end-to-end tests read off SIPp's message log and off a client's events."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

from presence_b2b.ipc.client import BlockingQsaClient, ClientEvent
from presence_b2b.presence.status import Failure, Status
from presence_b2b.store.connect import open_backend
from presence_b2b.store.record import DialogRecord

from tests.e2e.service import ServiceProcess, cli_command, wait_for
from tests.peers.sipp import LoggedMessage, SippProcess

_CONTACT_PORT = re.compile(r"<sips?:[^>]*:(\d+)[;>]")


def record_at(uas: SippProcess, user: str) -> str:
    """A presentity URI served by ``uas``."""
    return f"sip:{user}@127.0.0.1:{uas.port}"


def _to_has_tag(msg: LoggedMessage) -> bool:
    return ";tag=" in msg.header("To")


def initial_subscribes(uas: SippProcess) -> list[LoggedMessage]:
    """Out-of-dialog SUBSCRIBEs, one per dialog (retransmissions folded)."""
    seen: dict[str, LoggedMessage] = {}
    for msg in uas.received("SUBSCRIBE"):
        if not _to_has_tag(msg):
            seen.setdefault(msg.call_id, msg)
    return list(seen.values())


def dialogs_for(uas: SippProcess, record: str, subscriber: str) -> list[LoggedMessage]:
    """Initial SUBSCRIBEs for one (record, subscriber) pair."""
    return [
        m
        for m in initial_subscribes(uas)
        if record in m.header("To") and subscriber in m.header("From")
    ]


def in_dialog_subscribes(uas: SippProcess, call_id: str) -> list[LoggedMessage]:
    """In-dialog SUBSCRIBEs of one dialog, retransmissions folded (by CSeq)."""
    seen: dict[str, LoggedMessage] = {}
    for msg in uas.received("SUBSCRIBE"):
        if msg.call_id == call_id and _to_has_tag(msg):
            seen.setdefault(msg.header("CSeq"), msg)
    return list(seen.values())


def unsubscribed(uas: SippProcess, call_id: str) -> bool:
    """True once the dialog has seen its ``Expires: 0``."""
    return any(m.header("Expires") == "0" for m in in_dialog_subscribes(uas, call_id))


def contact_port(msg: LoggedMessage) -> int:
    match = _CONTACT_PORT.search(msg.header("Contact"))
    assert match, f"no port in Contact {msg.header('Contact')!r}"
    return int(match.group(1))


def wait_unsubscribed(uas: SippProcess, call_ids: list[str], timeout: float = 15.0) -> None:
    wait_for(
        f"Expires: 0 on every dialog {call_ids}",
        lambda: all(unsubscribed(uas, c) for c in call_ids),
        timeout,
    )


def wait_dialogs(
    uas: SippProcess, record: str, subscriber: str, count: int = 1, timeout: float = 15.0
) -> list[LoggedMessage]:
    """Wait until SIPp has seen ``count`` dialogs for the pair; return them all."""
    return wait_for(
        f"{count} SUBSCRIBE dialog(s) for {record} as {subscriber}",
        lambda: found if len(found := dialogs_for(uas, record, subscriber)) >= count else None,
        timeout,
    )


def next_event(
    client: BlockingQsaClient,
    what: str,
    match: Callable[[ClientEvent], bool] = lambda e: True,
    timeout: float = 15.0,
    skipped: list[ClientEvent] | None = None,
) -> ClientEvent:
    """The first event that matches; earlier ones go to ``skipped`` (if given)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        event = client.get(max(remaining, 0.0)) if remaining > 0 else None
        if event is None:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; "
                f"skipped: {[describe(e) for e in skipped or []]}"
            )
        if match(event):
            return event
        if skipped is not None:
            skipped.append(event)


def wait_each(
    client: BlockingQsaClient,
    ids: Iterable[int],
    what: str,
    match: Callable[[ClientEvent], bool],
    timeout: float = 15.0,
) -> dict[int, ClientEvent]:
    """Wait until every id in ``ids`` has had a matching event, in any order."""
    wanted = set(ids)
    got: dict[int, ClientEvent] = {}
    skipped: list[ClientEvent] = []
    deadline = time.monotonic() + timeout
    while wanted - set(got):
        event = next_event(
            client,
            f"{what} for ids {sorted(wanted - set(got))}",
            lambda e: e.id in wanted and e.id not in got and match(e),
            max(deadline - time.monotonic(), 0.01),
            skipped,
        )
        got[event.id] = event
    return got


def status_of(event: ClientEvent) -> Status:
    assert isinstance(event.message, Status), f"expected a status, got {describe(event)}"
    return event.message


def is_status(state: str, reason: str | None = None) -> Callable[[ClientEvent], bool]:
    def match(event: ClientEvent) -> bool:
        msg = event.message
        return (
            isinstance(msg, Status)
            and msg.state == state
            and (reason is None or msg.reason == reason)
        )

    return match


def is_open_with(note: str) -> Callable[[ClientEvent], bool]:
    """An active status whose PIDF is open with ``note``: the NOTIFY reached us."""

    def match(event: ClientEvent) -> bool:
        msg = event.message
        if not isinstance(msg, Status) or msg.state != "active" or msg.presentity is None:
            return False
        notes = [n.text for n in msg.presentity.notes]
        return msg.presentity.basic == "open" and note in notes

    return match


def describe(event: ClientEvent) -> str:
    msg = event.message
    if isinstance(msg, Failure):
        return f"#{msg.id} error {msg.kind} {msg.detail!r} retry_in={msg.retry_in}"
    notes = [n.text for n in msg.presentity.notes] if msg.presentity else []
    basic = msg.presentity.basic if msg.presentity else None
    return f"#{msg.id} {msg.state} ({msg.reason}) {basic} {notes}"


def no_more_events(client: BlockingQsaClient, quiet: float = 0.3) -> list[ClientEvent]:
    """Whatever arrives within ``quiet`` seconds (for asserting on extras)."""
    out: list[ClientEvent] = []
    while (event := client.get(quiet)) is not None:
        out.append(event)
    return out


def watch_json(
    control_socket: str,
    record: str,
    *extra: str,
    subscriber: str = "sip:watcher@example.com",
    count: int | None = None,
    timeout: float = 20.0,
) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``presence-b2b watch --json`` until ``count`` statuses or ``timeout``
    seconds: its exit code, its lines parsed, its stderr."""
    args = [
        *cli_command(), "watch", record, "--subscriber", subscriber,
        "--control-socket", control_socket, "--json", "--timeout", f"{timeout:g}", *extra,
    ]
    if count is not None:
        args += ["--count", str(count)]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout + 20, check=False
    )
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines()], out.stderr


def stored_dialogs(svc: ServiceProcess) -> list[DialogRecord]:
    """The confirmed dialogs in the service's SQLite store, read as the next start will."""
    url = str(svc.tables["store"]["url"])
    backend = open_backend(url, node="reader")
    try:
        return [
            r
            for shard in range(svc.shards)
            for r in backend.load(shard, svc.shards)
            if r.remote_tag is not None
        ]
    finally:
        backend.close()


def wait_stored(svc: ServiceProcess, count: int, timeout: float = 15.0) -> list[DialogRecord]:
    """Wait until ``count`` confirmed dialogs are in the store, each with a status."""
    return wait_for(
        f"{count} dialogs with their status in the store",
        lambda: found
        if len(found := [r for r in stored_dialogs(svc) if r.last_status]) >= count
        else None,
        timeout,
    )


def make_refreshes_due(svc: ServiceProcess) -> None:
    """Every stored dialog's refresh due now, as a long outage leaves them
    (the service must be down: the store is its)."""
    path = str(svc.tables["store"]["url"])[len("sqlite:///") :]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE dialogs SET refresh_at = min(refresh_at, ?)", (time.time(),))


def events_until_each_has(
    client: BlockingQsaClient,
    ids: Iterable[int],
    match: Callable[[ClientEvent], bool],
    timeout: float = 15.0,
) -> list[ClientEvent]:
    """Every event until each id in ``ids`` has had one that matches (all of
    them, unlike wait_each: for counting what came on the way)."""
    wanted, events = set(ids), []
    deadline = time.monotonic() + timeout
    while wanted:
        event = client.get(max(0.01, deadline - time.monotonic()))
        assert event is not None, f"no matching event for ids {sorted(wanted)}"
        events.append(event)
        if event.id in wanted and match(event):
            wanted.discard(event.id)
    return events
