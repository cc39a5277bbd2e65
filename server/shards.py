"""Starting, watching and restarting shard processes.

Each shard is a fresh interpreter (``python -m presence_b2b.shard.process``)
holding one end of a SEQPACKET pair and its metrics block as inherited fds.
The supervisor learns of a death from EOF on the channel (never by polling
pids), reaps the process, and starts a new one after a back-off that grows
while the shard keeps dying young.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ipc.channel import Answer, Channel, ChannelMessage, Query, Ready, socket_pair
from ..ipc.fdpass import close_fds
from ..metrics.block import MetricsBlock

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.1
MAX_BACKOFF = 10.0
STABLE_AFTER = 30.0
"""A shard that lived this long resets its back-off: the next crash restarts it at once."""


@dataclass(eq=False)
class Shard:
    """The supervisor's view of one shard slot (the process in it comes and goes)."""

    index: int
    block: MetricsBlock
    proc: subprocess.Popen[bytes] | None = None
    channel: Channel | None = None
    pid: int = 0
    port: int = 0
    up: bool = False
    starts: int = 0
    crashes_in_a_row: int = 0
    started_at: float = 0.0
    last_pong: float = 0.0
    down_since: float = 0.0
    """When the slot last lost its process (or first tried to start one); 0 while up."""
    start_failures: int = 0
    last_error: str = ""
    """Why the last start failed, for the status line; "" once it is up."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    queries: dict[int, asyncio.Future[Answer]] = field(default_factory=dict)

    def send(self, message: ChannelMessage, fds: tuple[int, ...] = ()) -> bool:
        return self.up and self.channel is not None and self.channel.send(message, fds)

    @property
    def backlog_bytes(self) -> int:
        """Bytes waiting in the supervisor for this shard's socket buffer to take them."""
        return self.channel.backlog_bytes if self.up and self.channel is not None else 0


class ShardPool:
    """The shard slots and their processes.

    ``on_ready(shard, restarted)`` runs when a shard reports Ready: the owner
    attaches clients and replays subscriptions there. ``on_down(shard)`` runs
    when one is gone. ``on_message`` gets everything else a shard sends.
    ``on_drained(shard)`` runs when the queue for a shard's full socket has
    emptied.
    """

    def __init__(
        self,
        blocks: tuple[MetricsBlock, ...],
        *,
        on_ready: Callable[[Shard, bool], None],
        on_down: Callable[[Shard], None],
        on_message: Callable[[Shard, ChannelMessage], None],
        configure: Callable[[Shard], None],
        on_drained: Callable[[Shard], None] = lambda shard: None,
        on_start_failed: Callable[[Shard], None] = lambda shard: None,
    ) -> None:
        self.shards = [Shard(i, block) for i, block in enumerate(blocks)]
        self._on_drained = on_drained
        self._on_start_failed = on_start_failed
        self._on_ready = on_ready
        self._on_down = on_down
        self._on_message = on_message
        self._configure = configure
        self._qid = itertools.count(1)
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restarts: set[asyncio.Task[None]] = set()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.shards)

    def __len__(self) -> int:
        return len(self.shards)

    def start_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = time.monotonic()
        for shard in self.shards:
            shard.down_since = now
            self._spawn(shard)

    def down_for(self, shard: Shard, now: float) -> float:
        """Seconds ``shard`` has been without a running process; 0 while it is up."""
        return 0.0 if shard.up or not shard.down_since else now - shard.down_since

    def _spawn(self, shard: Shard) -> None:
        """Start the shard's process, or count the failure and try again after a back-off.

        Every step that can run out of fds or memory (the socket pair, the
        fork) is inside the ``try``: an exception here must never end the
        restart chain, or the slot would stay empty for good.
        """
        assert self._loop is not None
        try:
            self._start_process(shard)
        except OSError as exc:
            shard.start_failures += 1
            shard.crashes_in_a_row += 1
            shard.last_error = f"cannot start: {exc}"
            log.error(
                "shard %d: cannot start (%d failures so far): %s; retrying",
                shard.index, shard.start_failures, exc,
            )
            self._on_start_failed(shard)
            self._schedule_restart(shard)
            return
        log.info("shard %d: started as pid %d", shard.index, shard.pid)

    def _start_process(self, shard: Shard) -> None:
        assert self._loop is not None
        ours, theirs = socket_pair()
        cmd = [
            sys.executable, "-m", "presence_b2b.shard.process",
            "--shard", str(shard.index),
            "--channel-fd", str(theirs.fileno()),
            "--metrics-fd", str(shard.block.fileno()),
            "--parent", str(os.getpid()),
        ]
        try:
            shard.proc = subprocess.Popen(
                cmd,
                pass_fds=(theirs.fileno(), shard.block.fileno()),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        shard.pid = shard.proc.pid
        shard.starts += 1
        shard.started_at = time.monotonic()
        shard.last_pong = shard.started_at
        shard.ready.clear()
        shard.channel = Channel(
            ours,
            lambda msg, fds: self._received(shard, msg, fds),
            lambda: self._closed(shard),
            name=f"channel to shard {shard.index}",
        )
        shard.channel.on_drained = lambda: self._on_drained(shard)
        shard.channel.start(self._loop)
        self._configure(shard)

    def _received(self, shard: Shard, msg: ChannelMessage, fds: list[int]) -> None:
        close_fds(fds)  # shards never send fds
        if isinstance(msg, Ready):
            shard.up = True
            shard.down_since = 0.0
            shard.last_error = ""
            shard.port = msg.port
            shard.last_pong = time.monotonic()
            shard.ready.set()
            self._on_ready(shard, shard.starts > 1)
        elif isinstance(msg, Answer):
            fut = shard.queries.pop(msg.qid, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        else:
            self._on_message(shard, msg)

    def _closed(self, shard: Shard) -> None:
        was_up = shard.up
        shard.up = False
        shard.channel = None
        if not shard.down_since:
            shard.down_since = time.monotonic()
        for fut in shard.queries.values():
            if not fut.done():
                fut.set_result(Answer(0, False, error=f"shard {shard.index} went away"))
        shard.queries.clear()
        code = self._reap(shard)
        lived = time.monotonic() - shard.started_at
        if not self.stopping:
            shard.last_error = f"exited with {code}"
            log.error(
                "shard %d (pid %d) exited with %s after %.1f s",
                shard.index, shard.pid, code, lived,
            )
        if was_up or not self.stopping:
            self._on_down(shard)
        if self.stopping:
            return
        shard.crashes_in_a_row = 0 if lived >= STABLE_AFTER else shard.crashes_in_a_row + 1
        self._schedule_restart(shard)

    def _reap(self, shard: Shard) -> int | None:
        proc = shard.proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            # Its channel is closed but it lives on: it can serve nobody. Kill it.
            proc.kill()
            return proc.wait()

    def _schedule_restart(self, shard: Shard) -> None:
        delay = 0.0
        if shard.crashes_in_a_row > 0:
            delay = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** (shard.crashes_in_a_row - 1))
        assert self._loop is not None

        async def later() -> None:
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                self._spawn(shard)
            except Exception:
                # Not an OSError from the start itself: still never leave the slot empty.
                log.exception("shard %d: restart failed; retrying", shard.index)
                shard.crashes_in_a_row += 1
                self._schedule_restart(shard)

        task = self._loop.create_task(later())
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def kill(self, shard: Shard, sig: int = signal.SIGKILL) -> None:
        """Kill a shard (memory limit, stuck); the usual restart path follows."""
        if shard.proc is not None and shard.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shard.proc.pid, sig)

    async def query(
        self, shard: Shard, command: str, args: dict[str, str], timeout: float = 3.0
    ) -> Answer:
        if not shard.up or shard.channel is None:
            return Answer(0, False, error=f"shard {shard.index} is down")
        qid = next(self._qid)
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        shard.queries[qid] = fut
        shard.channel.send(Query(qid, command, args))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            shard.queries.pop(qid, None)
            return Answer(qid, False, error=f"shard {shard.index} did not answer in {timeout} s")

    async def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` for every shard to exit, then kill what is left."""
        self.stopping = True
        for task in list(self._restarts):
            task.cancel()
        deadline = time.monotonic() + timeout
        while any(s.proc is not None and s.proc.poll() is None for s in self.shards):
            if time.monotonic() > deadline:
                for s in self.shards:
                    if s.proc is not None and s.proc.poll() is None:
                        log.warning("shard %d: still running at stop; killing it", s.index)
                        s.proc.kill()
                break
            await asyncio.sleep(0.05)
        for s in self.shards:
            if s.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    s.proc.wait(timeout=1.0)
            if s.channel is not None:
                s.channel.close()
