"""The supervisor ⇄ shard channel says how much it holds back and when it has drained."""

from __future__ import annotations

import asyncio

from presence_b2b.ipc.channel import Channel, Ping, socket_pair


def test_what_the_socket_cannot_take_is_counted_and_drained_is_reported_once_sent() -> None:
    async def scenario() -> None:
        ours, theirs = socket_pair()
        drained: list[int] = []
        channel = Channel(ours, lambda msg, fds: None, lambda: None)
        channel.on_drained = lambda: drained.append(channel.backlog_bytes)
        channel.start(asyncio.get_running_loop())
        while channel.backlog_bytes == 0:  # fill the socket buffer, then one more
            channel.send(Ping(1))
        held = channel.backlog_bytes
        assert held > 0 and drained == []
        theirs.setblocking(False)
        while not drained:
            try:
                while theirs.recv(65536):
                    pass
            except BlockingIOError:
                pass
            await asyncio.sleep(0.01)
        assert drained == [0] and channel.backlog_bytes == 0
        channel.close()
        theirs.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
