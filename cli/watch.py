"""``presence-b2b watch``: subscribe to one presentity and print what comes back.

The operator's first tool when a status looks wrong: it goes through the same
QSA path as any client, so what it prints is what a client would get. With
``--json`` every line is one self-contained object for ``jq``; every line
has the same keys, with null where a key does not apply to that kind, and
three more where they apply: ``document`` (the parsed body of a package other
than presence), ``list`` and ``resource`` (a resource list's status of one
resource, or of the list itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

import msgspec
import uvloop

from ..config import ConfigError, ServerSettings, load
from ..ipc.client import ClientEvent, ConnectError, QsaClient, QsaError
from ..presence.status import Failure, Status

PROG = "presence-b2b watch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``watch``; the CLI entry point owns the parser."""
    parser.add_argument("record", help="presentity URI to watch, e.g. sip:bob@example.com")
    parser.add_argument(
        "--subscriber", required=True, help="URI to subscribe as (From of the SUBSCRIBE)"
    )
    parser.add_argument(
        "--control-socket",
        default=None,
        help="QSA control socket (default: server.control_socket's default, "
        f"{ServerSettings().control_socket_path()})",
    )
    parser.add_argument(
        "--config", default=None, help="take the control socket path from this configuration"
    )
    parser.add_argument(
        "--event",
        "--package",
        dest="package",
        default="presence",
        metavar="PACKAGE",
        help="event package to subscribe to: presence (default), dialog, reg,"
        " message-summary, presence.winfo or any other token (raw bodies)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="exit 0 after N status lines (errors do not count); 0: until interrupted",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up after S seconds: exit 1 if --count was not reached, else 0",
    )


def _notes(message: Status) -> list[str]:
    presentity = message.presentity
    if presentity is None:
        return []
    texts = [n.text for n in presentity.notes]
    for t in presentity.tuples:
        texts.extend(n.text for n in t.notes)
    return texts


def as_json(event: ClientEvent) -> dict[str, Any]:
    """The ``--json`` object for one event (also used by tests and other tools)."""
    out: dict[str, Any] = {
        "kind": event.kind,
        "id": event.id,
        "record": event.record,
        "subscriber": event.subscriber,
        "state": None,
        "reason": None,
        "entity": None,
        "basic": None,
        "notes": [],
        "tuples": [],
        "content_type": None,
        "body": None,
        "parse_error": None,
        "merged": 0,
        "error_kind": None,
        "code": None,
        "detail": None,
        "retry_in": None,
    }
    msg = event.message
    if isinstance(msg, Status):
        presentity = msg.presentity
        out.update(
            state=str(msg.state),
            reason=msg.reason,
            entity=presentity.entity if presentity else None,
            basic=presentity.basic if presentity else None,
            notes=_notes(msg),
            tuples=msgspec.to_builtins(presentity.tuples) if presentity else [],
            content_type=msg.content_type,
            body=msg.body.decode("utf-8", errors="replace"),
            parse_error=msg.error or None,
            merged=msg.merged,
        )
        if msg.document is not None:
            out["document"] = msgspec.to_builtins(msg.document)
        if msg.list:
            out["list"] = msg.list
            out["resource"] = msg.resource or None
    else:
        out.update(
            error_kind=str(msg.kind), code=msg.code, detail=msg.detail, retry_in=msg.retry_in
        )
    return out


def as_line(event: ClientEvent) -> str:
    """One human line: time, record, then what changed."""
    stamp = time.strftime("%H:%M:%S")
    msg = event.message
    if isinstance(msg, Failure):
        parts = [stamp, event.record, "error", str(msg.kind)]
        if msg.code:
            parts.append(str(msg.code))
        if msg.detail:
            parts.append(repr(msg.detail))
        parts.append(f"retry in {msg.retry_in:g} s" if msg.retry_in is not None else "final")
        return " ".join(parts)
    parts = [stamp, event.record]
    if msg.resource:
        parts.append(msg.resource)
    parts.append(str(msg.state))
    if msg.reason:
        parts.append(f"({msg.reason})")
    basic = msg.presentity.basic if msg.presentity else None
    parts.append(basic or "-")
    parts.extend(repr(n) for n in _notes(msg))
    if msg.error:
        parts.append(f"[{msg.error}]")
    if msg.merged:
        parts.append(f"[+{msg.merged} merged]")
    return " ".join(parts)


def control_socket_of(config_path: str | None) -> str:
    """The control socket a configuration file names (the default one without a file)."""
    if config_path is None:
        return ServerSettings().control_socket_path()
    return load(config_path).server.control_socket_path()


async def _watch(args: argparse.Namespace) -> int:
    path = args.control_socket or control_socket_of(args.config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = QsaClient(path, name="watch")
    try:
        try:
            await client.connect()
            sub_id = await client.subscribe(args.record, args.subscriber, args.package, timeout=5.0)
        except ConnectError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        except QsaError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        deadline = None if args.timeout is None else loop.time() + args.timeout
        statuses = 0
        stopping = asyncio.ensure_future(stop.wait())
        code = 0
        try:
            while not args.count or statuses < args.count:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    if args.count:
                        print(
                            f"{PROG}: timeout after {args.timeout:g} s with "
                            f"{statuses} of {args.count} statuses",
                            file=sys.stderr,
                        )
                        code = 1
                    break
                getting = asyncio.ensure_future(client.next_event(remaining))
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                event = getting.result()
                if event is None:
                    if remaining is None:
                        break  # the client was closed under us
                    continue
                line = json.dumps(as_json(event)) if args.json else as_line(event)
                print(line, flush=True)
                if event.kind == "status":
                    statuses += 1
        finally:
            stopping.cancel()
        with contextlib.suppress(QsaError):
            await client.unsubscribe(sub_id, timeout=2.0)
        return code
    finally:
        await client.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done or interrupted, 1 timeout before --count, 2 unreachable/refused."""
    if args.count < 0:
        print(f"{PROG}: --count must be >= 0", file=sys.stderr)
        return 2
    try:
        return uvloop.run(_watch(args))
    except ConfigError as exc:
        print(f"{PROG}: configuration refused: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
