"""The supervisor's watchdog and stop rules, without starting any process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from presence_b2b.ipc.channel import Batch, Ended, Sub, Unsub
from presence_b2b.server.supervisor import MISSED_PINGS, PING_INTERVAL, Entry, Supervisor

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


class RecordingChannel:
    """Stands in for a shard's channel: remembers what was sent."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object, fds: tuple[int, ...] = ()) -> bool:
        self.sent.append(message)
        return True


def _register(sup: Supervisor, client: int, sub_id: int, shard: int, seq: int) -> None:
    sup.registry.setdefault(client, {})[sub_id] = Entry(
        shard, "presence", "sip:b@x", f"sip:a{sub_id}@x", seq
    )


def test_a_subscription_the_shard_ended_leaves_the_registry(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    _register(sup, 1, 5, shard=0, seq=11)
    _register(sup, 1, 6, shard=0, seq=12)
    sup._shard_message(sup.pool.shards[0], Ended([(1, 5, 11)]))
    assert set(sup.registry[1]) == {6}


def test_a_late_ended_does_not_remove_a_newer_subscription_under_the_same_id(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    _register(sup, 1, 5, shard=0, seq=20)  # id 5 reused after its first life ended
    sup._shard_message(sup.pool.shards[0], Ended([(1, 5, 11)]))
    sup._shard_message(sup.pool.shards[1], Ended([(1, 5, 20)]))
    assert set(sup.registry[1]) == {5}
    sup._shard_message(sup.pool.shards[0], Ended([(2, 1, 1)]))  # unknown client: ignored


class FakeRing:
    def fds(self) -> tuple[int, ...]:
        return ()


class FakeClient:
    def __init__(self, client_id: int) -> None:
        self.id = client_id
        self.name = "fake"
        self.status_rings = [FakeRing(), FakeRing()]


def test_an_unsubscribe_for_a_down_shard_is_answered_once_the_shard_is_back(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    shard = sup.pool.shards[1]
    sup.clients = {1: FakeClient(1), 2: FakeClient(2)}  # type: ignore[dict-item]
    _register(sup, 1, 5, shard=1, seq=3)
    _register(sup, 1, 6, shard=1, seq=4)
    _register(sup, 2, 7, shard=1, seq=5)
    # The shard is down: neither unsubscribe can be sent now.
    sup._unsubscribe(1, 5, sup.registry[1].pop(5))
    sup._unsubscribe(2, 7, sup.registry[2].pop(7))
    del sup.clients[2]  # and client 2 leaves before the shard is back

    channel = RecordingChannel()
    shard.channel = channel  # type: ignore[assignment]
    shard.up = True
    sup._shard_ready(shard, True)
    batches = [m for m in channel.sent if isinstance(m, Batch)]
    items = [i for b in batches for i in b.items]
    assert [(i.id, i.seq, i.replay) for i in items if isinstance(i, Sub)] == [(6, 4, True)]
    assert [i for i in items if isinstance(i, Unsub)] == [Unsub(1, 5, missed=True)]

    sup._unsubscribe(1, 6, sup.registry[1].pop(6))
    assert channel.sent[-1] == Unsub(1, 6), "with the shard up it goes at once"
