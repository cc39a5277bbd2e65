"""A shard process: one engine, one SIP socket, the client rings, the channel home.

The supervisor starts it as ``python -m presence_b2b.shard.process`` with the
channel socket and its metrics block as inherited fds, then sends it the
configuration. A fresh interpreter rather than a bare fork: a fork of a
running event loop inherits the loop's epoll fd, its signal wake-up fd and any
threads, and every one of those has bitten someone; starting clean avoids the
whole class. The shard dies with the supervisor (PR_SET_PDEATHSIG) and never
outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any

import uvloop

from .. import compiled, limits, logs
from .. import config as config_mod
from ..credentials import (
    CredentialsError,
    CredentialStore,
    load_credentials,
    resolve_credentials_path,
)
from ..ipc.channel import (
    Answer,
    Attach,
    Batch,
    Channel,
    ChannelMessage,
    Configure,
    Detach,
    Ended,
    Ping,
    Pong,
    Query,
    Ready,
    Reload,
    Shutdown,
    Sub,
    Unsub,
)
from ..ipc.fdpass import close_fds
from ..ipc.ring import Ring, RingError
from ..metrics.block import MetricsBlock
from ..metrics.heap import heap_figures
from ..metrics.shard import ShardMetrics
from ..store.backend import StoreUnavailableError
from ..store.connect import open_backend, parse_url
from ..store.driver import DialogStore
from .engine import Engine, LocalEndpoint
from .engine_metrics import MetricsObserver
from .fanout import FanOut
from .gc_policy import GcPauses, GcPolicy
from .persistence import Persistence
from .stream_setup import open_network
from .transport import EngineDriver, ExtraSocket, bind_udp

log = logging.getLogger("presence_b2b.shard")

PR_SET_PDEATHSIG = 1
EXIT_BIND_FAILED = 3
EXIT_BAD_START = 4
GC_TICK = 10.0
#: A store that could not be opened at start is tried again after this many
#: seconds, the wait doubling up to STORE_RETRY_MAX: a database that comes up
#: after the service (a boot, a failover) is used as soon as it answers.
STORE_RETRY_FIRST = 1.0
STORE_RETRY_MAX = 30.0


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the supervisor dies; exit if it already did."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


class ShardProcess:
    """Everything a shard runs, wired together once the configuration arrives."""

    def __init__(self, index: int, channel_sock: socket.socket, block: MetricsBlock) -> None:
        self.index = index
        self.block = block
        self.loop = asyncio.get_running_loop()
        self.channel = Channel(
            channel_sock, self._on_message, self._on_channel_closed, name=f"shard {index}"
        )
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.config: config_mod.Config | None = None
        self.engine: Engine | None = None
        self.fanout: FanOut | None = None
        self.driver: EngineDriver | None = None
        self.m: ShardMetrics | None = None
        self.persistence: Persistence | None = None
        self._stop_flush: Any = None
        self._stopping = False
        self._in_batch = False  # a channel Batch is being applied: one flush at its end
        self._store_retry: asyncio.Task[None] | None = None

    async def run(self) -> int:
        self.channel.start(self.loop)
        for sig in (signal.SIGTERM,):
            self.loop.add_signal_handler(sig, self._begin_shutdown, 5.0)
        code = await self.done
        if self._stop_flush is not None:
            self._stop_flush()
        return code

    # ------------------------------------------------------------------ start

    async def _configure(self, msg: Configure) -> None:
        try:
            cfg = config_mod.from_mapping(msg.config)
        except config_mod.ConfigError as exc:
            log.error("shard %d: bad configuration: %s", self.index, exc)
            self._exit(EXIT_BAD_START)
            return
        self.config = cfg
        logging.getLogger().setLevel(cfg.server.log_level.upper())
        port = cfg.sip.port + self.index
        socks: list[socket.socket] = []
        try:
            for address in cfg.sip.listen:
                socks.append(bind_udp(address, port))
        except OSError as exc:
            for bound in socks:
                bound.close()
            log.error("shard %d: cannot bind %s:%d: %s", self.index, address, port, exc)
            self._exit(EXIT_BIND_FAILED)
            return
        self.m = ShardMetrics(self.block)
        self._stop_flush = self.m.start_flushing(self.loop)
        sock, *more = socks
        driver = EngineDriver(self.loop, family=sock.family)
        await self.loop.create_datagram_endpoint(lambda: driver, sock=sock)
        for extra in more:  # the shard's other addresses (e.g. IPv6 beside IPv4)
            udp, _ = await self.loop.create_datagram_endpoint(
                lambda: ExtraSocket(driver), sock=extra
            )
            driver.network.add_udp(udp, extra.family)
        host = cfg.sip.advertise or cfg.sip.listen[0]
        try:
            await open_network(
                driver.network, cfg.sip, cfg.dns, self.index,
                advertised_host=host, clock=driver.clock, metrics=self.m,
            )
        except (OSError, ssl.SSLError) as exc:
            log.error("shard %d: cannot open TCP/TLS listeners: %s", self.index, exc)
            self._exit(EXIT_BIND_FAILED)
            return
        fanout = FanOut(
            self.m, self._start_sub, self._stop_sub, self._ended, wake_later=self.loop.call_soon
        )
        engine = Engine(
            cfg.presence_b2b,
            cfg.sip,
            LocalEndpoint(host, port),
            clock=driver.clock,
            observer=MetricsObserver(self.m),
            subscribe_rate=cfg.sip.subscribe_rate / cfg.server.shard_count(),
            credentials=self._credentials(cfg),
            journal=bool(cfg.store.url),
        )
        driver.engine = engine
        driver.consumer = fanout.consume
        self.driver, self.engine, self.fanout = driver, engine, fanout
        resting = self.m.dialogs_resting
        self.m.add_sampler(lambda: resting.set(engine.resting))
        by_call_id = self.m.dialogs_by_call_id
        self.m.add_sampler(lambda: by_call_id.set(engine.dialogs.by_call_id))
        if cfg.store.url:
            # Before Ready: the supervisor's replay must find the restored dialogs.
            self.persistence = await self._open_store(cfg, engine, fanout, driver)
            if self.persistence is None:
                self._store_retry = self.loop.create_task(
                    self._keep_opening_store(cfg, engine, fanout, driver)
                )
        self.channel.send(Ready(self.index, os.getpid(), port))
        self.loop.create_task(self._gc_ticks(engine, self.m))
        addresses = " ".join(cfg.sip.listen)
        log.info("shard %d: SIP on %s port %d (advertised %s)", self.index, addresses, port, host)

    async def _keep_opening_store(
        self, cfg: config_mod.Config, engine: Engine, fanout: FanOut, driver: EngineDriver
    ) -> None:
        """Try the store again until it opens, waiting longer each time."""
        wait = STORE_RETRY_FIRST
        while True:
            await asyncio.sleep(wait)
            if self._stopping:
                return
            self.persistence = await self._open_store(cfg, engine, fanout, driver, late=True)
            if self.persistence is not None:
                log.info("shard %d: dialog store opened; writing its dialogs", self.index)
                return
            wait = min(wait * 2, STORE_RETRY_MAX)

    async def _open_store(
        self,
        cfg: config_mod.Config,
        engine: Engine,
        fanout: FanOut,
        driver: EngineDriver,
        *,
        late: bool = False,
    ) -> Persistence | None:
        """The dialog store, with this shard's stored dialogs taken back. A store
        that cannot be opened leaves the shard running without one (logged and
        counted; tried again later): presence matters more than surviving the
        next restart. ``late``: the shard has been running without it."""
        assert self.m is not None
        settings, shards = cfg.store, cfg.server.shard_count()
        store = DialogStore(
            lambda: open_backend(
                settings.url, node=settings.node_name(), lease_seconds=settings.lease_seconds
            ),
            shard=self.index,
            shards=shards,
            interval=settings.batch_interval_ms / 1000,
            lease_seconds=settings.lease_seconds,
            keeper=self.index == 0,
            clock=driver.clock,
        )
        persistence = Persistence(
            store, engine, fanout, self.m,
            grace=settings.reattach_grace,
            rate=cfg.sip.subscribe_rate / shards,
            flush=driver.flush,
        )
        try:
            await persistence.start(late=late)
        except StoreUnavailableError as exc:
            log.error(
                "shard %d: dialog store unavailable, running without it for now: %s",
                self.index, exc,
            )
            self.m.store_errors.labels("unavailable").value += 1
            engine.changes = None
            with contextlib.suppress(Exception):
                await store.close(release=False)
            return None
        return persistence

    async def _gc_ticks(self, engine: Engine, m: ShardMetrics) -> None:
        policy = GcPolicy()
        by_generation = [m.gc_pause_seconds.labels(str(g)) for g in range(3)]
        pauses = GcPauses(lambda generation, seconds: by_generation[generation].observe(seconds))
        try:
            while not self._stopping:
                await asyncio.sleep(GC_TICK)
                if policy.tick(len(engine)):
                    log.debug(
                        "shard %d: froze the heap at %d subscriptions", self.index, len(engine)
                    )
        finally:
            pauses.close()

    # ------------------------------------------------------------------ engine glue

    def _start_sub(self, did: int, record: str, subscriber: str, package: str) -> None:
        assert self.engine is not None and self.driver is not None
        self.engine.subscribe(did, record, subscriber, package)
        if not self._in_batch:
            self.driver.flush()

    def _stop_sub(self, did: int) -> None:
        assert self.engine is not None and self.driver is not None
        self.engine.unsubscribe(did)
        if not self._in_batch:
            self.driver.flush()

    def _ended(self, items: list[tuple[int, int, int]]) -> None:
        """Client subscriptions over without an unsubscribe: the registry must forget them."""
        self.channel.send(Ended(items))

    # ------------------------------------------------------------------ channel

    def _on_message(self, msg: ChannelMessage, fds: list[int]) -> None:
        if isinstance(msg, Configure):
            if self.config is None:
                self.loop.create_task(self._configure(msg))
            return
        fanout = self.fanout
        if fanout is None:
            close_fds(fds)
            log.warning("shard %d: %s before configuration; dropped", self.index, type(msg))
            return
        if isinstance(msg, Sub):
            self._sub(fanout, msg)
        elif isinstance(msg, Unsub):
            fanout.unsubscribe(msg.client, msg.id, missed=msg.missed, key=msg.key)
        elif isinstance(msg, Batch):
            # One flush for the whole batch: its SUBSCRIBEs leave together, and
            # the engine's output and timer are taken once, not once per item.
            self._in_batch = True
            try:
                for item in msg.items:
                    if isinstance(item, Sub):
                        self._sub(fanout, item)
                    else:
                        fanout.unsubscribe(item.client, item.id, missed=item.missed, key=item.key)
            finally:
                self._in_batch = False
                if self.driver is not None:
                    self.driver.flush()
        elif isinstance(msg, Attach):
            self._attach(fanout, msg, fds)
            return
        elif isinstance(msg, Detach):
            fanout.detach(msg.client)
        elif isinstance(msg, Ping):
            engine = self.engine
            self.channel.send(
                Pong(msg.seq, len(engine) if engine else 0, len(fanout.dialogs))
            )
        elif isinstance(msg, Query):
            self.channel.send(self._answer(msg))
        elif isinstance(msg, Reload):
            self._reload(msg)
        elif isinstance(msg, Shutdown):
            self._begin_shutdown(msg.grace)
        close_fds(fds)

    def _sub(self, fanout: FanOut, msg: Sub) -> None:
        if self._stopping:
            return
        if msg.refuse:
            fanout.refuse(msg.client, msg.id, msg.refuse)
            return
        fanout.subscribe(
            msg.client, msg.id, msg.package, msg.record, msg.subscriber,
            replay=msg.replay, seq=msg.seq,
        )

    def _attach(self, fanout: FanOut, msg: Attach, fds: list[int]) -> None:
        if len(fds) != 3:
            close_fds(fds)
            log.error("shard %d: attach of client %d without 3 fds", self.index, msg.client)
            return
        try:
            ring = Ring.attach(fds[0], fds[1], fds[2])
        except (RingError, OSError) as exc:
            close_fds(fds)
            log.error("shard %d: status ring of client %d refused: %s", self.index, msg.client, exc)
            return
        fanout.attach(msg.client, ring)

    def _reload(self, msg: Reload) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            cfg = config_mod.from_mapping({"presence_b2b": msg.params})
        except config_mod.ConfigError as exc:
            log.error("shard %d: reload refused: %s", self.index, exc)
            return
        engine.reconfigure(cfg.presence_b2b)
        if msg.credentials and self.config is not None:
            credentials = self._credentials(self.config)
            if credentials is not None:
                engine.set_credentials(credentials)
        logging.getLogger().setLevel(msg.log_level.upper())

    def _credentials(self, cfg: config_mod.Config) -> CredentialStore | None:
        """The credentials file, read by this process (the supervisor checked it
        first). A file that cannot be read leaves the shard without credentials,
        so challenges fail visibly with kind ``auth``, rather than crash-looping."""
        setting = cfg.auth.credentials_file
        if not setting:
            return None
        try:
            return load_credentials(resolve_credentials_path(setting))
        except CredentialsError as exc:
            log.error("shard %d: credentials refused: %s", self.index, exc)
            return None

    def _on_channel_closed(self) -> None:
        # The supervisor is gone (or closed us): nothing can reach clients' requests
        # any more, and PR_SET_PDEATHSIG will follow. Leave at once.
        self._exit(0)

    # ------------------------------------------------------------------ admin

    def _answer(self, q: Query) -> Answer:
        engine, fanout = self.engine, self.fanout
        assert engine is not None and fanout is not None
        try:
            if q.command == "stats":
                return Answer(q.qid, True, {
                    "shard": self.index,
                    "pid": os.getpid(),
                    "compiled": compiled.is_compiled(),
                    "dialogs": len(fanout.dialogs),
                    "subscriptions": len(engine),
                    "resting": engine.resting,
                    "clients": len(fanout.outboxes),
                    "states": engine.state_counts(),
                    "pending_statuses": sum(len(b.pending) for b in fanout.outboxes.values()),
                    "held_subscribes": engine.held,
                    "subscribe_pace": None if engine.pace is None
                    else round(engine.pace.current(engine.clock()), 1),
                    "connections": 0 if self.driver is None else self.driver.network.connections(),
                    "store": self._store_stats(),
                    "params": dataclasses.asdict(engine.params),
                })
            if q.command == "memory":
                return Answer(q.qid, True, {
                    "shard": self.index,
                    "dialogs": len(fanout.dialogs),
                    "resting": engine.resting,
                    **heap_figures(),
                })
            if q.command == "list":
                rows = []
                for found in fanout.find(q.args.get("record", ""), q.args.get("subscriber", "")):
                    state = engine.state_of(found.did)
                    rows.append({
                        "id": f"{self.index}:{found.did}",
                        "package": found.package,
                        "record": found.record,
                        "subscriber": found.subscriber,
                        "state": None if state is None else state.name.lower(),
                        "clients": len(found.interests),
                    })
                return Answer(q.qid, True, rows)
            did = int(q.args.get("id", "0"))
            entry = fanout.dialogs.get(did)
            if entry is None:
                return Answer(q.qid, False, error=f"no subscription {self.index}:{did}")
            if q.command == "show":
                data = fanout.describe(entry)
                data["id"] = f"{self.index}:{did}"
                data["engine"] = engine.snapshot(did)
                return Answer(q.qid, True, data)
            if q.command == "kill":
                gone = fanout.kill(did, "ended by the operator")
                self.driver.flush() if self.driver else None
                return Answer(q.qid, True, {"clients": [list(i) for i in gone]})
            if q.command == "refresh":
                ok = engine.refresh(did)
                self.driver.flush() if self.driver else None
                return Answer(q.qid, ok, error="" if ok else "not refreshable now")
            return Answer(q.qid, False, error=f"unknown command {q.command!r}")
        except (ValueError, KeyError) as exc:
            return Answer(q.qid, False, error=str(exc))

    def _store_stats(self) -> dict[str, Any] | None:
        """The store as ``ctl stats`` shows it: never the URL (it may hold a password)."""
        persistence, cfg = self.persistence, self.config
        if persistence is None or cfg is None:
            return None
        store = persistence.store
        return {
            "backend": parse_url(cfg.store.url)[0],
            "node": cfg.store.node_name(),
            "partitions_held": store.held,
            "waiting_rows": len(store.buffer),
            **dataclasses.asdict(store.stats),
        }

    # ------------------------------------------------------------------ stop

    def _begin_shutdown(self, grace: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.loop.create_task(self._shutdown(grace))

    async def _shutdown(self, grace: float) -> None:
        engine, driver = self.engine, self.driver
        if engine is not None and driver is not None:
            engine.shutdown()
            driver.flush()
            deadline = self.loop.time() + grace
            while not engine.idle and self.loop.time() < deadline:
                await asyncio.sleep(0.05)
            if not engine.idle:
                log.warning(
                    "shard %d: %d subscriptions did not end within %.1f s",
                    self.index, len(engine), grace,
                )
        if self.fanout is not None:
            deadline = self.loop.time() + 1.0
            while any(b.pending for b in self.fanout.outboxes.values()):
                if self.loop.time() > deadline:
                    break
                await asyncio.sleep(0.01)
            self.fanout.close()
        if self._store_retry is not None:
            self._store_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._store_retry
        if self.persistence is not None:
            # Stopping for good: what did not end is forgotten, never resumed.
            try:
                await self.persistence.close(forget=True)
            except Exception:
                log.exception("shard %d: dialog store not closed cleanly", self.index)
        self._exit(0)

    def _exit(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="presence-b2b-shard")
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--metrics-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.setup("info")
    limits.raise_fd_limit()
    channel_sock = socket.socket(fileno=args.channel_fd)
    block = MetricsBlock(args.metrics_fd, str(args.shard))

    async def run() -> int:
        return await ShardProcess(args.shard, channel_sock, block).run()

    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
