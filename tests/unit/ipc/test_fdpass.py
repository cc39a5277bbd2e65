"""fd passing over SEQPACKET: round trips, truncation, no leaked fds."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from collections.abc import Iterator

import pytest
from presence_b2b.ipc.fdpass import (
    FdPassError,
    async_recv_fds,
    async_send_fds,
    close_fds,
    recv_fds,
    send_fds,
)


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def make_pipes(n: int) -> list[int]:
    fds: list[int] = []
    for _ in range(n):
        fds.extend(os.pipe())
    return fds


def test_fds_round_trip_and_refer_to_the_same_files(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    r, w = os.pipe()
    send_fds(a, b"hello", [r, w])
    data, fds = recv_fds(b, 100, 4)
    assert data == b"hello"
    assert len(fds) == 2
    os.write(fds[1], b"x")
    assert os.read(r, 1) == b"x"
    close_fds([r, w, *fds])


def test_received_fds_are_close_on_exec(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    r, w = os.pipe2(0)
    send_fds(a, b"x", [r])
    _, fds = recv_fds(b, 10, 1)
    assert fcntl.fcntl(fds[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    close_fds([r, w, *fds])


def test_message_without_fds_returns_an_empty_list(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    send_fds(a, b"plain", [])
    assert recv_fds(b, 100, 4) == (b"plain", [])


def test_empty_payload_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ValueError):
        send_fds(pair[0], b"", [0])


def test_eof_returns_empty_data_and_no_fds(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    assert recv_fds(b, 100, 4) == (b"", [])


def test_more_fds_than_allowed_raises_and_leaks_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    sent = make_pipes(4)
    before = open_fd_count()
    send_fds(a, b"ring fds", sent)
    with pytest.raises(FdPassError, match="MSG_CTRUNC"):
        recv_fds(b, 100, 3)
    assert open_fd_count() == before
    close_fds(sent)


def test_fds_to_a_receiver_that_expects_none_leak_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    sent = make_pipes(2)
    before = open_fd_count()
    send_fds(a, b"unexpected", sent)
    with pytest.raises(FdPassError):
        recv_fds(b, 100, 0)
    assert open_fd_count() == before
    close_fds(sent)


def test_truncated_payload_raises_and_closes_the_fds(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    sent = make_pipes(1)
    before = open_fd_count()
    send_fds(a, b"x" * 1000, sent)
    with pytest.raises(FdPassError, match="MSG_TRUNC"):
        recv_fds(b, 100, 4)
    assert open_fd_count() == before
    close_fds(sent)


def test_async_variants_wait_for_the_peer(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setblocking(False)
    b.setblocking(False)
    r, w = os.pipe()

    async def main() -> tuple[bytes, list[int]]:
        receiving = asyncio.ensure_future(async_recv_fds(b, 100, 2))
        await asyncio.sleep(0.05)
        assert not receiving.done()
        await async_send_fds(a, b"late", [r])
        return await asyncio.wait_for(receiving, 5)

    data, fds = asyncio.run(main())
    assert data == b"late"
    assert len(fds) == 1
    close_fds([r, w, *fds])


def test_async_send_waits_for_room_when_the_socket_is_full(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.setblocking(False)
    b.setblocking(False)
    sent = 0
    try:
        while True:
            send_fds(a, b"y" * 4096, [])
            sent += 1
    except BlockingIOError:
        pass

    async def main() -> None:
        sending = asyncio.ensure_future(async_send_fds(a, b"last", []))
        await asyncio.sleep(0.05)
        assert not sending.done()
        for _ in range(sent):
            recv_fds(b, 8192, 0)
        await asyncio.wait_for(sending, 5)

    asyncio.run(main())
    assert recv_fds(b, 100, 0) == (b"last", [])
