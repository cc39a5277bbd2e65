"""A shard whose channel has too much queued stops the supervisor reading its clients' rings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from presence_b2b.ipc.channel import Sub
from presence_b2b.ipc.control import ConnectedClient, Peer
from presence_b2b.ipc.messages import Subscribe, encode
from presence_b2b.ipc.ring import Ring, RingWriter
from presence_b2b.server.supervisor import Supervisor

from presence_b2b import config


class QueueingChannel:
    """Stands in for a shard's channel: records what was sent, reports a backlog."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.backlog_bytes = 0

    def send(self, message: object, fds: tuple[int, ...] = ()) -> bool:
        self.sent.append(message)
        return True


def one_shard_supervisor(tmp_path: Path) -> tuple[Supervisor, QueueingChannel]:
    cfg = config.from_mapping(
        {
            "server": {"shards": 1, "control_socket": str(tmp_path / "qsa.sock")},
            "metrics": {"listen": ""},
        }
    )
    sup = Supervisor(cfg)
    channel = QueueingChannel()
    shard = sup.pool.shards[0]
    shard.channel = channel  # type: ignore[assignment]
    shard.up = True
    return sup, channel


def connected_client() -> tuple[ConnectedClient, RingWriter]:
    request = Ring.create(1 << 16)
    client = ConnectedClient(
        id=1, name="bulk", peer=Peer(1, 0, 0), request_ring=request,
        status_rings=(Ring.create(4096),), requests=request.reader(),
    )  # fmt: skip
    return client, request.writer()


def subscribe(writer: RingWriter, *ids: int) -> None:
    for i in ids:
        assert writer.try_write(encode(Subscribe(i, "presence", f"sip:{i}@x", "sip:w@x")))


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def subs(channel: QueueingChannel) -> list[int]:
    return [m.id for m in channel.sent if isinstance(m, Sub)]


Scenario = Callable[[Supervisor, QueueingChannel, ConnectedClient, RingWriter], Awaitable[None]]


def with_one_client(tmp_path: Path, scenario: Scenario) -> None:
    """Run ``scenario`` on a one-shard supervisor with one client connected."""
    sup, channel = one_shard_supervisor(tmp_path)
    client, writer = connected_client()

    async def main() -> None:
        sup.on_client(client)
        await scenario(sup, channel, client, writer)

    asyncio.run(main())
    client.close()


def test_a_full_shard_queue_pauses_the_clients_ring_and_its_draining_resumes_it_in_order(
    tmp_path: Path,
) -> None:
    async def scenario(
        sup: Supervisor, channel: QueueingChannel, client: ConnectedClient, writer: RingWriter
    ) -> None:
        subscribe(writer, 1)
        await turns()
        assert subs(channel) == [1]
        channel.backlog_bytes = sup.shard_backlog_limit  # the shard stops reading
        subscribe(writer, 2, 3)
        await turns()
        subscribe(writer, 4)
        await turns()
        assert subs(channel) == [1]
        assert client.requests.depth_bytes() > 0  # the ring is left unread: back-pressure
        channel.backlog_bytes = 0
        sup._channel_drained(sup.pool.shards[0])
        await turns()
        assert subs(channel) == [1, 2, 3, 4]
        assert client.requests.depth_bytes() == 0
        subscribe(writer, 5)
        await turns()
        assert subs(channel) == [1, 2, 3, 4, 5]
        assert sup.m.qsa_request_pauses.value == 1

    with_one_client(tmp_path, scenario)


def test_clients_waiting_on_a_shard_that_dies_go_on_and_their_requests_wait_for_replay(
    tmp_path: Path,
) -> None:
    async def scenario(
        sup: Supervisor, channel: QueueingChannel, client: ConnectedClient, writer: RingWriter
    ) -> None:
        channel.backlog_bytes = sup.shard_backlog_limit
        subscribe(writer, 1, 2)
        await turns()
        shard = sup.pool.shards[0]
        shard.up = False
        sup._shard_down(shard)
        await turns()
        assert sup.registry.count(client.id) == 2
        replayed = sup.registry.replay(0, restarted=True)
        assert [item.id for item in replayed] == [1, 2]

    with_one_client(tmp_path, scenario)
