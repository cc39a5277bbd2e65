"""The supervisor's watchdog and stop rules, without starting any process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from presence_b2b.ipc.channel import Unsub
from presence_b2b.ipc.messages import Subscribe
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
        self.watchdog_sent = asyncio.Event()

    def ready(self, status: str = "") -> bool:
        self.sent.append("READY=1")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS={text}")
        return True

    def watchdog(self) -> bool:
        self.sent.append("WATCHDOG=1")
        self.watchdog_sent.set()
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
    sup.ping_interval = 0  # the watch loop runs at every turn of the event loop

    async def turns(n: int = 20) -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    async def shards_taking_their_time(timeout: float) -> None:
        await turns()  # unsubscribing, waiting for terminating NOTIFYs

    monkeypatch.setattr(sup.pool, "stop", shards_taking_their_time)

    async def scenario() -> None:
        sup._tasks = [asyncio.get_running_loop().create_task(sup._watch())]
        await notifier.watchdog_sent.wait()
        await sup.shutdown()
        await turns()

    asyncio.run(scenario())
    stopping = notifier.sent.index("STOPPING=1")
    assert "WATCHDOG=1" in notifier.sent[:stopping]
    assert notifier.sent[stopping + 1 :] == []


class RecordingChannel:
    """Stands in for a shard's channel: remembers what was sent."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object, fds: tuple[int, ...] = ()) -> bool:
        self.sent.append(message)
        return True


def _subscribed(sup: Supervisor, client: int, sub_id: int) -> int:
    sup.registry.add_client(client)
    shard, _ = sup.registry.subscribe(client, Subscribe(sub_id, "presence", "sip:b@x", "sip:a@x"))
    return shard


def test_an_unsubscribe_for_a_down_shard_is_owed_to_that_shards_replay(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    shard = _subscribed(sup, 1, 5)
    sup.unsubscribe(1, 5)  # every shard is down: nothing can be sent
    assert sup.registry.get(1, 5) is None
    assert sup.registry.replay(shard, restarted=True) == [
        Unsub(1, 5, missed=True, key=("presence", "sip:b@x", "sip:a@x"))
    ]


def test_an_unsubscribe_for_a_shard_that_is_up_goes_at_once(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    index = _subscribed(sup, 1, 5)
    shard = sup.pool.shards[index]
    channel = RecordingChannel()
    shard.channel = channel  # type: ignore[assignment]
    shard.up = True
    sup.unsubscribe(1, 5)
    assert channel.sent == [Unsub(1, 5)]
    assert sup.registry.replay(index, restarted=True) == []
