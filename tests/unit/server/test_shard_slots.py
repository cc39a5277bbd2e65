"""A shard slot is never left empty for good, and an empty one is reported."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from presence_b2b.ipc import channel as channel_mod
from presence_b2b.ipc.control import Peer
from presence_b2b.ipc.messages import AdminRequest
from presence_b2b.metrics.collector import MetricsBlocks
from presence_b2b.server import shards as shards_mod
from presence_b2b.server.shards import Shard, ShardPool
from presence_b2b.server.supervisor import SHARD_DOWN_GRACE, Supervisor

from presence_b2b import config


class FakeProcess:
    """What the pool keeps of a started shard process; nothing is started."""

    def __init__(self, cmd: list[str], **kwargs: Any) -> None:
        self.pid = os.getpid()

    def poll(self) -> int:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def kill(self) -> None:
        pass


def test_a_start_that_runs_out_of_fds_is_retried_with_back_off_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[float] = []
    kept: list[socket.socket] = []

    def socket_pair() -> tuple[socket.socket, socket.socket]:
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        ours, theirs = channel_mod.socket_pair()
        kept.append(theirs.dup())  # the "shard" end stays open: no EOF, no restart
        return ours, theirs

    monkeypatch.setattr(shards_mod, "socket_pair", socket_pair)
    monkeypatch.setattr(shards_mod.subprocess, "Popen", FakeProcess)
    blocks = MetricsBlocks(1)
    failed: list[int] = []

    async def scenario() -> Shard:
        pool = ShardPool(
            blocks.shards, on_ready=lambda s, r: None, on_down=lambda s: None,
            on_message=lambda s, m: None, configure=lambda s: None,
            on_start_failed=lambda s: failed.append(s.index),
        )  # fmt: skip
        pool.start_all()
        while len(attempts) < 4:
            await asyncio.sleep(0.01)
        shard = pool.shards[0]
        await pool.stop(1.0)
        return shard

    shard = asyncio.run(asyncio.wait_for(scenario(), 10))
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert (shard.start_failures, shard.starts, failed) == (3, 1, [0, 0, 0])
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39
    assert "Too many open files" in shard.last_error
    for sock in kept:
        sock.close()
    blocks.close()


def _supervisor(tmp_path: Path) -> Supervisor:
    cfg = config.from_mapping(
        {
            "server": {"shards": 2, "control_socket": str(tmp_path / "qsa.sock")},
            "metrics": {"listen": ""},
        }
    )
    return Supervisor(cfg)


def test_a_shard_down_past_the_grace_counts_against_the_watchdog_and_the_status_says_why(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    running, empty = sup.pool.shards
    running.up = True
    running.last_pong = time.monotonic()
    empty.down_since = time.monotonic() - SHARD_DOWN_GRACE - 5
    empty.last_error = "cannot start: [Errno 24] Too many open files"
    sent: list[str] = []
    sup.notifier.watchdog = lambda: sent.append("WATCHDOG=1") or True  # type: ignore[method-assign]
    sup.notifier.status = lambda text: sent.append(f"STATUS={text}") or True  # type: ignore[method-assign]
    sup._ready_sent = True
    sup.ping_interval = 0

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(sup._watch())
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(scenario())
    assert sup.lost_shards() == [empty]
    assert "WATCHDOG=1" not in sent
    assert sent[-1].startswith(
        "STATUS=1/2 shards up (shard 1 down for 65 s: cannot start: [Errno 24] Too many open files)"
    )
    assert sup._health() == (False, sent[-1].removeprefix("STATUS=").split(", ")[0])


def test_a_shard_that_is_only_restarting_does_not_count_against_the_watchdog(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    for shard in sup.pool.shards:
        shard.up = True
    restarting = sup.pool.shards[1]
    restarting.up = False
    restarting.down_since = time.monotonic() - 10.0  # the longest back-off
    assert sup.lost_shards() == []


def test_ctl_stats_tells_how_long_a_shard_is_down_and_why(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    empty = sup.pool.shards[1]
    empty.down_since = time.monotonic() - 30
    empty.start_failures = 4
    empty.last_error = "cannot start: [Errno 24] Too many open files"
    reply = asyncio.run(sup.admin.run(AdminRequest("stats"), Peer(os.getpid(), 0, 0)))
    shard = reply.data["shards"][1]
    assert (shard["start_failures"], shard["last_error"]) == (4, empty.last_error)
    assert 29 <= shard["down_s"] <= 40
