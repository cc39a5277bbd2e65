"""The supervisor: clients in, shards out, and everything that keeps them alive.

It owns the control socket (who may connect; their rings), the registry of
every client subscription (so a dead client is cleaned up and a restarted
shard gets its subscriptions back), the shard processes, the metrics endpoint
and the conversation with systemd. It never touches SIP and never writes a
status ring: statuses go from the owning shard straight to the client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import signal
import time
from typing import Any

import psutil

from .. import config as config_mod
from ..credentials import CredentialsError, load_credentials, resolve_credentials_path
from ..ipc.channel import (
    Attach,
    ChannelMessage,
    Configure,
    Detach,
    Ended,
    Ping,
    Pong,
    Reload,
    Shutdown,
    Sub,
    Unsub,
    batches,
)
from ..ipc.control import ConnectedClient, ControlServer, Peer
from ..ipc.messages import AdminReply, AdminRequest, ProtocolError, Subscribe, decode_request
from ..metrics.collector import MetricsBlocks, make_registry
from ..metrics.http import MetricsServer, parse_listen
from .admin import AdminCommands
from .backpressure import SHARD_BACKLOG_BYTES, RequestGate
from .registry import Registry
from .sdnotify import SystemdNotifier
from .shards import Shard, ShardPool

log = logging.getLogger("presence_b2b.server")

PING_INTERVAL = 2.0
MISSED_PINGS = 3
"""A shard that has not answered this many pings in a row counts as stuck."""
SHARD_DOWN_GRACE = 60.0
"""A shard without a process for longer than this counts against the watchdog, like a
stuck one: restarts with the longest back-off (10 s) come back well within it, so
only a slot that cannot be filled (no fds, no memory, a start that keeps failing)
reaches it, and systemd then restarts the whole service."""
MEMORY_CHECK_INTERVAL = 2.0
"""psutil reads /proc for each shard: a few tens of microseconds each."""
STOP_MARGIN = 5.0
"""Seconds on top of wait_for_term_notify that shards get to finish on SIGTERM."""


def config_tables(cfg: config_mod.Config) -> dict[str, Any]:
    """The config as TOML-like tables (tuples as lists) for a shard's Configure."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        out[f.name] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(section).items()
        }
    return out


class Supervisor:
    """``await Supervisor(config, path).run()`` serves until SIGTERM/SIGINT; returns 0."""

    def __init__(self, cfg: config_mod.Config, config_path: str | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.shard_count = cfg.server.shard_count()
        self.blocks = MetricsBlocks(self.shard_count)
        self.m = self.blocks.supervisor_metrics
        self.pool = ShardPool(
            self.blocks.shards,
            on_ready=self._shard_ready,
            on_down=self._shard_down,
            on_message=self._shard_message,
            configure=self._configure_shard,
            on_drained=self._channel_drained,
            on_start_failed=lambda shard: self.blocks.shard_start_failed(shard.index),
        )
        self.control = ControlServer.from_settings(cfg.server, self, shards=self.shard_count)
        self.clients: dict[int, ConnectedClient] = {}
        self.registry = Registry(self.shard_count)
        self.gate = RequestGate()
        #: Bytes queued for one shard above which its clients' rings are not read.
        self.shard_backlog_limit = SHARD_BACKLOG_BYTES
        self.notifier = SystemdNotifier()
        self.admin = AdminCommands(self)
        self.metrics_server: MetricsServer | None = None
        self.started = time.monotonic()
        self.stopping = False
        self._stop = asyncio.Event()
        self._ready_sent = False
        self._tasks: list[asyncio.Task[None]] = []
        self._ping_seq = 0
        self._stuck_logged = ("", "")
        self.ping_interval = PING_INTERVAL
        if self.notifier.watchdog_interval:
            # Ping often enough that a stuck shard is noticed within one watchdog period.
            self.ping_interval = min(PING_INTERVAL, self.notifier.watchdog_interval / MISSED_PINGS)
        requests = self.m.qsa_requests
        self._m_requests = {op: requests.labels(op) for op in ("subscribe", "unsubscribe")}
        self._m_bad = self.m.errors.labels("bad_client_record")
        self._m_pauses = self.m.qsa_request_pauses
        self._m_ring_depth = self.m.qsa_ring_depth_bytes.labels("request")
        self._m_ring_high = self.m.qsa_ring_high_water_bytes.labels("request")
        #: Malformed request-ring records already counted, per client id.
        self._ring_bad_seen: dict[int, int] = {}

    # ------------------------------------------------------------------ life

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        if self.cfg.metrics.listen:
            host, port = parse_listen(self.cfg.metrics.listen)
            registry = make_registry(self.blocks, self._pids)
            self.metrics_server = MetricsServer(registry, host, port, health=self._health)
            await self.metrics_server.start()
            log.info("metrics on http://%s:%d/metrics", host, self.metrics_server.port)
        self.pool.start_all()
        await self.control.start()
        self._tasks = [
            loop.create_task(self._watch()),
            loop.create_task(self._check_memory()),
        ]
        await self._stop.wait()
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        """Stop taking requests, unsubscribe every dialog, wait, exit."""
        self.stopping = True
        # No more WATCHDOG=1 or "n shards up" once STOPPING=1 is out: the status
        # line must keep saying that the service is stopping.
        for task in self._tasks:
            task.cancel()
        grace = float(self.cfg.presence_b2b.wait_for_term_notify)
        self.notifier.stopping(f"unsubscribing, at most {grace:g} s")
        log.info("stopping: unsubscribing every dialog (at most %g s)", grace)
        for client in self.clients.values():
            client.requests.detach()
        for shard in self.pool:
            shard.send(Shutdown(grace))
        await self.pool.stop(grace + STOP_MARGIN)
        await self.control.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        self.notifier.close()
        log.info("stopped")

    async def reload(self) -> None:
        """SIGHUP: re-read the file and apply what can change while running."""
        if self.config_path is None:
            log.info("SIGHUP: no configuration file to reload (running on defaults)")
            return
        self.notifier.reloading()
        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as exc:
            log.error("SIGHUP: configuration refused, keeping the old one: %s", exc)
            self.notifier.ready(self._status_line())
            return
        fixed = [
            f"{section}.{key}"
            for section, key in _RESTART_ONLY
            if getattr(getattr(new, section), key) != getattr(getattr(self.cfg, section), key)
        ]
        if fixed:
            log.warning("SIGHUP: %s change only on restart; kept as they were", ", ".join(fixed))
        self.cfg = dataclasses.replace(
            self.cfg,
            presence_b2b=new.presence_b2b,
            server=dataclasses.replace(
                self.cfg.server,
                **{key: getattr(new.server, key) for key in _LIVE_SERVER_KEYS},
            ),
        )
        self.control.apply(self.cfg.server)
        logging.getLogger().setLevel(new.server.log_level.upper())
        params = config_tables(self.cfg)["presence_b2b"]
        credentials = self._credentials_reloadable()
        for shard in self.pool:
            shard.send(Reload(params, new.server.log_level, credentials))
        log.info("SIGHUP: configuration reloaded")
        self.notifier.ready(self._status_line())

    def _credentials_reloadable(self) -> bool:
        """SIGHUP re-reads the credentials file only when it passes the same checks
        as at start; otherwise every shard keeps the credentials it has."""
        setting = self.cfg.auth.credentials_file
        if not setting:
            return False
        try:
            count = len(load_credentials(resolve_credentials_path(setting)))
        except CredentialsError as exc:
            log.error("SIGHUP: credentials refused, keeping the old ones: %s", exc)
            return False
        log.info("SIGHUP: %d credentials to load", count)
        return True

    # ------------------------------------------------------------------ shards

    def _configure_shard(self, shard: Shard) -> None:
        assert shard.channel is not None
        shard.channel.send(Configure(config_tables(self.cfg)))

    def _shard_ready(self, shard: Shard, restarted: bool) -> None:
        self.blocks.shard_started(shard.index, restart=restarted)
        for client in self.clients.values():
            shard.send(Attach(client.id, client.name), client.status_rings[shard.index].fds())
        items = self.registry.replay(shard.index, restarted=restarted)
        for batch in batches(items):
            shard.send(batch)
        if restarted:
            subs = sum(isinstance(item, Sub) for item in items)
            log.info("shard %d: back up; %d subscriptions replayed", shard.index, subs)
        if not self._ready_sent and all(s.up for s in self.pool):
            self._ready_sent = True
            log.info("all %d shards up", self.shard_count)
            self.notifier.ready(self._status_line())

    def _shard_down(self, shard: Shard) -> None:
        self.blocks.shard_exited(shard.index)
        # Its queue went with its channel: clients waiting on it go on (what
        # they send now is kept in the registry for the replay).
        self._channel_drained(shard)

    def _shard_message(self, shard: Shard, msg: ChannelMessage) -> None:
        if isinstance(msg, Pong):
            shard.last_pong = time.monotonic()
        elif isinstance(msg, Ended):
            self.registry.ended(shard.index, msg.items)

    def _pids(self) -> dict[str, int]:
        pids = {"supervisor": os.getpid()}
        for s in self.pool:
            if s.up and s.pid:
                pids[str(s.index)] = s.pid
        return pids

    def _health(self) -> tuple[bool, str]:
        return all(s.up for s in self.pool), self._shards_line()

    def _shards_line(self) -> str:
        """``2/2 shards up``, and for each shard that is down since when and why."""
        now = time.monotonic()
        up = sum(s.up for s in self.pool)
        downs = [
            f"shard {s.index} down for {self.pool.down_for(s, now):.0f} s"
            + (f": {s.last_error}" if s.last_error else "")
            for s in self.pool
            if not s.up
        ]
        line = f"{up}/{self.shard_count} shards up"
        return f"{line} ({'; '.join(downs)})" if downs else line

    @property
    def stuck_after(self) -> float:
        return MISSED_PINGS * self.ping_interval

    def stuck_shards(self) -> list[Shard]:
        now = time.monotonic()
        return [s for s in self.pool if s.up and now - s.last_pong > self.stuck_after]

    def lost_shards(self) -> list[Shard]:
        """Shards without a process for longer than SHARD_DOWN_GRACE: no restart got them back."""
        now = time.monotonic()
        return [s for s in self.pool if self.pool.down_for(s, now) > SHARD_DOWN_GRACE]

    async def _watch(self) -> None:
        """Ping shards; tell systemd we are alive only while none is stuck or lost."""
        interval = self.ping_interval
        while True:
            self._ping_seq += 1
            for shard in self.pool:
                shard.send(Ping(self._ping_seq))
            await asyncio.sleep(interval)
            stuck = self.stuck_shards()
            lost = self.lost_shards()
            names = ", ".join(str(s.index) for s in stuck)
            lost_names = ", ".join(str(s.index) for s in lost)
            if (names, lost_names) != self._stuck_logged:  # say it when it changes
                if stuck:
                    log.error(
                        "shard(s) %s not answering for %g s; withholding the watchdog",
                        names, self.stuck_after,
                    )
                if lost:
                    log.error(
                        "shard(s) %s down for more than %g s; withholding the watchdog",
                        lost_names, SHARD_DOWN_GRACE,
                    )
                if not stuck and not lost and any(self._stuck_logged):
                    log.info("every shard runs and answers again")
                self._stuck_logged = (names, lost_names)
            if not stuck and not lost and self._ready_sent:
                self.notifier.watchdog()
            if self._ready_sent:
                self.notifier.status(self._status_line())
            self.m.qsa_clients.set(len(self.clients))
            self.m.qsa_connections_refused.value = float(self.control.refused)
            self._sample_request_rings()

    def _sample_request_rings(self) -> None:
        """Request-ring depth, high water and malformed records, from every client's reader."""
        depth = 0
        for client in self.clients.values():
            reader = client.requests
            depth += reader.depth_bytes()
            self._m_ring_high.set_max(reader.high_water_bytes)
            self._count_bad_ring_records(client)
        self._m_ring_depth.set(depth)

    def _count_bad_ring_records(self, client: ConnectedClient) -> None:
        """Malformed records the ring reader skipped count as bad_client_record errors."""
        bad = client.requests.bad_records
        seen = self._ring_bad_seen.get(client.id, 0)
        if bad > seen:
            self._m_bad.value += bad - seen
            self._ring_bad_seen[client.id] = bad

    async def _check_memory(self) -> None:
        while True:
            await asyncio.sleep(MEMORY_CHECK_INTERVAL)
            limit = self.cfg.server.shard_memory_limit_bytes
            if not limit:
                continue
            for shard in self.pool:
                if not shard.up or not shard.pid:
                    continue
                try:
                    rss = psutil.Process(shard.pid).memory_info().rss
                except psutil.Error:
                    continue
                if rss > limit:
                    log.error(
                        "shard %d: RSS %d bytes over the limit of %d; restarting it",
                        shard.index, rss, limit,
                    )
                    self.pool.kill(shard)

    def _status_line(self) -> str:
        subs = len(self.registry)
        clients = len(self.clients)
        return f"{self._shards_line()}, {clients} clients, {subs} subscriptions"

    # ------------------------------------------------------------------ clients

    def on_client(self, client: ConnectedClient) -> None:
        if self.stopping:
            return
        self.clients[client.id] = client
        self.registry.add_client(client.id)
        for shard in self.pool:
            shard.send(Attach(client.id, client.name), client.status_rings[shard.index].fds())
        self._read_requests(client)
        log.info("client %d (%s, pid %d, uid %d) connected", client.id, client.name or "-",
                 client.pid, client.uid)

    def on_client_gone(self, client: ConnectedClient) -> None:
        self.clients.pop(client.id, None)
        self.gate.forget(client.id)
        self._count_bad_ring_records(client)
        self._ring_bad_seen.pop(client.id, None)
        subs = self.registry.remove_client(client.id)
        for shard in self.pool:
            shard.send(Detach(client.id))
        log.info("client %d gone; its %d subscriptions end", client.id, subs)

    def _read_requests(self, client: ConnectedClient) -> None:
        loop = asyncio.get_running_loop()
        client.requests.attach_reader(loop, lambda records: self._requests(client, records))

    def _requests(self, client: ConnectedClient, records: list[bytes]) -> None:
        if self.stopping:
            return
        if not self.registry.has_client(client.id):
            return
        self._take(client, collections.deque(records))

    def _take(self, client: ConnectedClient, records: collections.deque[bytes]) -> bool:
        """Handle ``records`` in ring order. False when a request's shard had too much
        queued: the client is paused with the rest held until that channel drains."""
        while records:
            try:
                msg = decode_request(records[0])
            except ProtocolError as exc:
                records.popleft()
                self._m_bad.value += 1
                log.warning("client %d: bad request record skipped: %s", client.id, exc)
                continue
            target = self.registry.shard_for(client.id, msg)
            if target is not None and (
                self.pool.shards[target].backlog_bytes >= self.shard_backlog_limit
            ):
                client.requests.detach()
                self.gate.hold(target, client, records)
                self._m_pauses.value += 1
                return False
            records.popleft()
            if isinstance(msg, Subscribe):
                self._m_requests["subscribe"].value += 1
                limit = self.cfg.server.max_subscriptions_per_client
                index, sub = self.registry.subscribe(client.id, msg, limit)
                self.pool.shards[index].send(sub)
            else:
                self._m_requests["unsubscribe"].value += 1
                self.unsubscribe(client.id, msg.id)
        return True

    def _channel_drained(self, shard: Shard) -> None:
        """Clients paused for this shard send what they held, then are read again."""
        for held in self.gate.release(shard.index):
            client = held.client
            if self.stopping or client.id not in self.clients:
                continue
            if self._take(client, held.records):
                self._read_requests(client)

    def unsubscribe(self, client: int, sub_id: int) -> None:
        """End a client's subscription; if its shard is down, once the shard is back."""
        entry = self.registry.unsubscribe(client, sub_id)
        if entry is not None and not self.pool.shards[entry.shard].send(Unsub(client, sub_id)):
            self.registry.owe_unsubscribe(client, sub_id, entry)

    async def on_admin(self, request: AdminRequest, peer: Peer) -> AdminReply:
        return await self.admin.run(request, peer)


_LIVE_SERVER_KEYS = (
    "allowed_uids",
    "allowed_gids",
    "admin_gids",
    "log_level",
    "shard_memory_limit_bytes",
    "max_subscriptions_per_client",
    "max_clients_per_uid",
    "max_handshakes_per_uid",
    "max_admin_sessions_per_uid",
)
"""[server] keys a SIGHUP applies at once; the others take a restart."""

_RESTART_ONLY = (
    ("server", "shards"),
    ("server", "control_socket"),
    ("server", "request_ring_bytes"),
    ("server", "status_ring_bytes"),
    ("sip", "listen"),
    ("sip", "port"),
    ("sip", "advertise"),
    ("sip", "t1"),
    ("sip", "t2"),
    ("sip", "t4"),
    ("sip", "max_message_size"),
    ("sip", "subscribe_rate"),
    ("sip", "user_agent"),
    ("metrics", "listen"),
    ("auth", "credentials_file"),
)


async def serve(cfg: config_mod.Config, config_path: str | None) -> int:
    supervisor = Supervisor(cfg, config_path)
    with contextlib.suppress(asyncio.CancelledError):
        return await supervisor.run()
    return 0
