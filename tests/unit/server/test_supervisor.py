"""The supervisor's watchdog and stop rules, without starting any process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from presence_b2b.server.supervisor import MISSED_PINGS, PING_INTERVAL, Supervisor

from presence_b2b import config


def _supervisor(tmp_path: Path) -> Supervisor:
    cfg = config.from_mapping(
        {
            "server": {"shards": 2, "control_socket": str(tmp_path / "qsa.sock")},
            "metrics": {"listen": ""},
            "presence_b2b": {"wait_for_term_notify": 0},
        }
    )
    return Supervisor(cfg)


class RecordingNotifier:
    """Stands in for SystemdNotifier: remembers what would have been sent."""

    watchdog_interval: float | None = None

    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str = "") -> bool:
        self.sent.append("READY=1")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS={text}")
        return True

    def watchdog(self) -> bool:
        self.sent.append("WATCHDOG=1")
        return True

    def stopping(self, status: str = "") -> bool:
        self.sent.append("STOPPING=1")
        return True

    def close(self) -> None:
        pass


def test_without_a_watchdog_shards_are_pinged_every_two_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sup = _supervisor(tmp_path)
    assert sup.ping_interval == PING_INTERVAL
    assert sup.stuck_after == MISSED_PINGS * PING_INTERVAL


def test_a_short_watchdog_makes_a_stuck_shard_count_within_one_watchdog_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1500000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sup = _supervisor(tmp_path)
    assert sup.ping_interval == pytest.approx(0.5)
    assert sup.stuck_after <= 1.5


def test_a_shard_that_missed_its_pongs_is_stuck_and_one_that_answered_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sup = _supervisor(tmp_path)
    quiet, lively = sup.pool.shards
    now = time.monotonic()
    for shard in (quiet, lively):
        shard.up = True
    quiet.last_pong = now - sup.stuck_after - 1
    lively.last_pong = now
    assert sup.stuck_shards() == [quiet]


def test_no_watchdog_or_ready_status_follows_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sup = _supervisor(tmp_path)
    notifier = RecordingNotifier()
    sup.notifier = notifier  # type: ignore[assignment]
    sup._ready_sent = True
    sup.ping_interval = 0.01

    async def shards_taking_their_time(timeout: float) -> None:
        await asyncio.sleep(0.1)  # unsubscribing, waiting for terminating NOTIFYs

    monkeypatch.setattr(sup.pool, "stop", shards_taking_their_time)

    async def scenario() -> None:
        sup._tasks = [asyncio.get_running_loop().create_task(sup._watch())]
        await asyncio.sleep(0.05)
        await sup.shutdown()
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    stopping = notifier.sent.index("STOPPING=1")
    assert "WATCHDOG=1" in notifier.sent[:stopping]
    assert notifier.sent[stopping + 1 :] == []
