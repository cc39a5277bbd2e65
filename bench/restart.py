"""The dialog store's cost, and a restart of the whole service from it.

Run: ``.venv/bin/python bench/restart.py [--subs M] [--rate R] [--repeat N] [--quick]``.

cost      bench/e2e.py's set-up run and NOTIFY stream against SIPp, with the
          store off and with SQLite on, alternating in one run (--repeat each):
          subs/s and NOTIFY/s, medians, and the ratio store-on / store-off.
restart   M subscriptions against bench/stub_uas.py (a presence server with no
          state per dialog, which counts initial, refresh and unsubscribe
          SUBSCRIBEs), SQLite on, ``sip.subscribe_rate = R``. Once every dialog
          is in the store the whole service is killed (SIGKILL to supervisor and
          shards); the stored refresh times are set to the moment of the kill
          (as an outage long enough for every refresh to fall due would leave
          them), so every dialog is overdue at the start and the restart's
          pacing shows. One client
          then subscribes the M pairs again. Figures: time from the start to
          every shard up (the store read included), to every client status
          back, and to M in-dialog refreshes at the server; refreshes per
          second; new initial SUBSCRIBEs (the goal: 0); dialogs a NOTIFY can
          find only by their whole Call-ID (the goal: 0, every restored dialog
          back under the id its Call-ID names); RSS after.
takeover  two instances on one PostgreSQL started here (initdb/pg_ctl in a
          temporary directory): --takeover dialogs on the first, which is
          killed; the seconds until the second has refreshed every one of them
          in the dialog (its Contact), adopted, new initial SUBSCRIBEs.

Human-readable lines, then the last line: one JSON object. Never fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_b2b.store.connect import open_backend

from bench.capacity import start_stub, stop_stub
from bench.common import Service, code_version, exit_on_sigterm, print_json
from bench.e2e import Load, setup_run, stream_run

GRANTED = 3600
"""Expires the stub grants in the restart phase: no dialog refreshes before the
kill, however long establishing M of them takes."""



def _store_config(directory: str) -> dict[str, dict[str, object]]:
    """A store in ``directory``: a temporary one the caller removes after the run."""
    path = Path(directory) / "dialogs.db"
    return {"store": {"url": f"sqlite:///{path}", "batch_interval_ms": 200}}


def _store_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="presence-b2b-store-")


def cost(
    shards: int, subs: int, window: int, *, dialogs: int, count: int, repeat: int
) -> dict[str, Any]:
    """Set-up and NOTIFY rates with the store off and on, alternating."""
    runs: dict[str, dict[str, list[float]]] = {
        "off": {"subs_per_s": [], "notify_per_s": []},
        "on": {"subs_per_s": [], "notify_per_s": []},
    }
    for rep in range(repeat):
        for mode in ("off", "on"):
            with _store_dir() as directory, Service(
                shards=shards, config=_store_config(directory) if mode == "on" else None
            ) as svc:
                svc.start()
                setup = setup_run(svc, subs, window)
                stream = stream_run(
                    svc, dialogs=dialogs, count=count, gap_ms=0.0, spread=False,
                    window=window, setup_rate=setup.subs_per_s,
                )
            runs[mode]["subs_per_s"].append(setup.subs_per_s)
            runs[mode]["notify_per_s"].append(stream.notify_per_s)
            print(
                f"  cost rep {rep + 1} store {mode:>3}: set-up {setup.subs_per_s:7.0f} subs/s"
                f"  stream {stream.notify_per_s:7.0f} NOTIFY/s"
                f"  ({setup.failures} failures, {stream.received}/{stream.expected})"
            )
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in runs.items()}
    return {
        "subs_per_s_store_off": round(med["off"]["subs_per_s"]),
        "subs_per_s_store_on": round(med["on"]["subs_per_s"]),
        "notify_per_s_store_off": round(med["off"]["notify_per_s"]),
        "notify_per_s_store_on": round(med["on"]["notify_per_s"]),
        "subs_ratio_on_off": round(
            med["on"]["subs_per_s"] / max(med["off"]["subs_per_s"], 1e-9), 3
        ),
        "notify_ratio_on_off": round(
            med["on"]["notify_per_s"] / max(med["off"]["notify_per_s"], 1e-9), 3
        ),
    }


def _stored(svc: Service, url: str) -> int:
    backend = open_backend(url, node="bench")
    try:
        return sum(
            1 for i in range(svc.shards) for r in backend.load(i, svc.shards) if r.remote_tag
        )
    finally:
        backend.close()


def _fall_due(url: str) -> None:
    """Every stored dialog's refresh due now, as after a long outage."""
    path = url[len("sqlite:///") :]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE dialogs SET refresh_at = min(refresh_at, ?)", (time.time(),))


def _wait_refreshes(svc: Service, expected: int, t0: float, stall: float = 30.0) -> float | None:
    """Seconds from ``t0`` until the shards have sent ``expected`` refreshes
    (from /metrics), or None if they stop moving short of it."""
    last, moved = -1.0, time.monotonic()
    while True:
        sent = svc.scrape().total("sip_requests_sent_total", kind="refresh")
        now = time.monotonic()
        if sent >= expected:
            return now - t0
        if sent != last:
            last, moved = sent, now
        elif now - moved > stall:
            print(f"  restart: refreshes stalled at {sent:.0f}/{expected}", file=sys.stderr)
            return None
        time.sleep(0.2)


async def _subscribe(
    svc: Service, port: int, subs: int, window: int, *, then_kill: str = "",
    then_refreshed: float | None = None,
) -> tuple[float, int, int, float | None]:
    """Subscribe every pair and wait for its status; ``then_kill`` (the store's
    URL): once every dialog is in the store, kill the service while the client is still there
    (a client that leaves first would have its dialogs unsubscribed).
    ``then_refreshed`` (a start time): wait, still connected, until every
    dialog has been refreshed; the seconds from that start come fourth."""
    async with Load(svc.control_socket, port, subs, svc.shards) as load:
        took, done = await load.subscribe_all(window)
        if then_kill:
            deadline = time.monotonic() + 120
            while (stored := await asyncio.to_thread(_stored, svc, then_kill)) < done:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            print(f"  restart: {stored} dialogs in the store; killing the service")
            await asyncio.to_thread(svc.kill)
        refreshed = None
        if then_refreshed is not None:
            refreshed = await asyncio.to_thread(_wait_refreshes, svc, subs, then_refreshed)
        return took, done, load.failures, refreshed


def restart(shards: int, subs: int, rate: float, window: int) -> dict[str, Any]:
    stub, port = start_stub(GRANTED)
    try:
        directory = _store_dir()
        config = _store_config(directory.name)
        url = str(config["store"]["url"])
        config["sip"] = {"subscribe_rate": rate}
        svc = Service(shards=shards, config=config)
        with directory, svc:
            svc.start()
            took, done, failures, _ = asyncio.run(
                _subscribe(svc, port, subs, window, then_kill=url)
            )
            stored = _stored(svc, url)
            print(f"  restart: {done}/{subs} up in {took:.1f} s ({failures} failures)")
            before = stop_stub(stub)
            # The stub counts per process: a fresh one on the same port.
            stub, _ = start_stub(GRANTED, port)
            _fall_due(url)
            t0 = time.monotonic()
            svc.start(timeout=600)
            up_s = time.monotonic() - t0
            stats = svc.stats() or {"shards": []}
            restored = sum(s.get("store", {}).get("restored", 0) for s in stats["shards"])
            back_took, back, _, refreshed_s = asyncio.run(
                _subscribe(svc, port, subs, window, then_refreshed=t0)
            )
            back_s = up_s + back_took
            # Restored dialogs whose Call-ID leads to no id of theirs (the
            # shards sample the gauge every 0.5 s; the refreshes took longer).
            by_call_id = svc.scrape().total("dialogs_by_call_id")
            rss = svc.rss()
            after = stop_stub(stub)
            stub = None
    finally:
        if stub is not None:
            stop_stub(stub)
    refreshes = after.get("subscribe_refresh", 0)
    return {
        "restart_subs": subs,
        "restart_stored": stored,
        "restart_restored": restored,
        "restart_up_s": round(up_s, 2),
        "restart_statuses_back_s": round(back_s, 2),
        "restart_statuses_back": back,
        "restart_all_refreshed_s": None if refreshed_s is None else round(refreshed_s, 2),
        "restart_refreshes": refreshes,
        "restart_refresh_per_s": None
        if not refreshed_s
        else round(refreshes / refreshed_s),
        "restart_new_initial_subscribes": after.get("subscribe_initial", 0),
        "restart_dialogs_by_call_id": round(by_call_id),
        "restart_initial_before": before.get("subscribe_initial", 0),
        "restart_rss_bytes_per_sub": round(rss / max(subs, 1)),
    }


def _rows_in(url: str) -> int:
    """Confirmed dialogs in a PostgreSQL store."""
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM dialogs WHERE remote_tag IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


def takeover(shards: int, subs: int, window: int) -> dict[str, Any]:
    """Two service instances on one PostgreSQL: ``subs`` dialogs on A, A killed,
    B claims A's partitions once their leases run out and refreshes every
    dialog in the dialog: seconds from the kill until B has sent them all."""
    from tests.peers.postgres import PostgresServer, postgres_missing

    why = postgres_missing()
    if why is not None:
        print(f"  takeover: skipped: {why}")
        return {"takeover_skipped": why}
    lease = 10.0
    pg = PostgresServer().start()
    stub, port = start_stub(GRANTED)
    try:
        url = pg.create_database()

        def node(name: str) -> Service:
            return Service(shards=shards, config={
                "store": {"url": url, "node": name, "lease_seconds": lease},
                "sip": {"subscribe_rate": 1000},
            })

        a, b = node("host-a"), node("host-b")
        with a, b:
            a.start()
            b.start()

            async def on_a() -> int:
                async with Load(a.control_socket, port, subs, shards) as load:
                    _, done = await load.subscribe_all(window)
                    while await asyncio.to_thread(_rows_in, url) < done:
                        await asyncio.sleep(0.5)
                    await asyncio.to_thread(a.kill)
                    return done

            done = asyncio.run(on_a())
            killed = time.monotonic()
            before = stop_stub(stub)
            stub, _ = start_stub(GRANTED, port)
            took = _wait_refreshes(b, done, killed, stall=lease * 3)
            stats = b.stats() or {"shards": []}
            adopted = sum(s["store"]["adopted"] for s in stats["shards"])
            after = stop_stub(stub)
            stub = None
    finally:
        if stub is not None:
            stop_stub(stub)
        pg.cleanup()
    print(f"  takeover: {done} dialogs of a killed node refreshed by the other "
          f"{'-' if took is None else f'{took:.1f}'} s after the kill (lease {lease:g} s); "
          f"{adopted} adopted; {after.get('subscribe_initial', 0)} new initial SUBSCRIBEs")
    return {
        "takeover_dialogs": done,
        "takeover_lease_s": lease,
        "takeover_all_refreshed_s": None if took is None else round(took, 1),
        "takeover_adopted": adopted,
        "takeover_refreshes": after.get("subscribe_refresh", 0),
        "takeover_new_initial_subscribes": after.get("subscribe_initial", 0),
        "takeover_initial_before": before.get("subscribe_initial", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--subs", type=int, default=100_000, help="dialogs in the restart phase")
    ap.add_argument("--rate", type=float, default=1000.0, help="sip.subscribe_rate (/s)")
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--cost-subs", type=int, default=5000)
    ap.add_argument("--stream-dialogs", type=int, default=1000)
    ap.add_argument("--stream-count", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--takeover", type=int, default=10_000, help="dialogs of the node killed")
    ap.add_argument("--only", default="cost,restart,takeover")
    ap.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.subs, args.window, args.repeat = 400, 200, 1
        args.cost_subs, args.stream_dialogs, args.stream_count = 300, 100, 5
        args.only = "cost,restart"  # the takeover waits out a lease: not a smoke run
    logging.basicConfig(level=logging.WARNING)
    exit_on_sigterm()
    print(
        f"restart bench: {args.shards} shard(s); cost {args.cost_subs} subs, "
        f"{args.stream_dialogs}x{args.stream_count} NOTIFYs, {args.repeat} rep(s); "
        f"restart of {args.subs} dialogs at {args.rate:g}/s"
    )
    result: dict[str, Any] = {"version": code_version(), "shards": args.shards}
    only = set(args.only.split(","))
    if "cost" in only:
        result |= cost(
            args.shards, args.cost_subs, min(args.window, 500), dialogs=args.stream_dialogs,
            count=args.stream_count, repeat=args.repeat,
        )
    if "restart" in only:
        result |= restart(args.shards, args.subs, args.rate, args.window)
    if "takeover" in only:
        result |= takeover(args.shards, args.takeover, args.window)
    print_json(result)


if __name__ == "__main__":
    main()
