"""Passing file descriptors over a Unix socket (SCM_RIGHTS), without leaking any.

Python 3.11's ``socket.recv_fds`` ignores the message flags: when the sender
passes more fds than the receiver made room for, the kernel sets MSG_CTRUNC,
silently drops the extra ones, and the caller never learns that its ring set is
incomplete. These helpers check both truncation flags, close whatever did
arrive before raising, and receive with MSG_CMSG_CLOEXEC so that a fork+exec
in the receiving process cannot inherit another client's rings.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
from collections.abc import Iterable
from typing import Final

_INT_SIZE: Final = array.array("i").itemsize
_RECV_FLAGS: Final = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
# Plain ints: ``int & socket.MSG_CTRUNC`` goes through enum.Flag in Python, a
# cost per channel message the shard paid on every Sub of a set-up.
_CTRUNC: Final = int(socket.MSG_CTRUNC)
_TRUNC: Final = int(socket.MSG_TRUNC)


class FdPassError(OSError):
    """A message with fds could not be received whole; any fds that came were closed."""


def close_fds(fds: Iterable[int]) -> None:
    """Close every fd, ignoring ones already closed: used on every error path."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> int:
    """Send ``data`` with ``fds`` attached in one message; returns the bytes sent.

    ``data`` must not be empty: on a stream or seqpacket socket a message with
    no payload would not carry its control data to the peer reliably.
    """
    if not data:
        raise ValueError("send_fds needs at least one byte of payload")
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes()))
    return sock.sendmsg([data], ancillary)


def _collect_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _INT_SIZE
            fds.extend(array.array("i", payload[:whole]))
    return fds


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive one message and up to ``maxfds`` fds (close-on-exec).

    Returns ``(b"", [])`` at EOF. Raises FdPassError, after closing the fds
    that did arrive, when the control data (MSG_CTRUNC) or the payload
    (MSG_TRUNC) was cut short: a partial set of ring fds is useless and a
    partial message is not decodable.
    """
    ancbuf = socket.CMSG_SPACE(maxfds * _INT_SIZE) if maxfds > 0 else 0
    data, ancdata, flags, _ = sock.recvmsg(bufsize, ancbuf, _RECV_FLAGS)
    fds = _collect_fds(ancdata)
    if flags & _CTRUNC:
        close_fds(fds)
        raise FdPassError(
            f"peer sent more fds than the {maxfds} expected (MSG_CTRUNC); closed {len(fds)}"
        )
    if flags & _TRUNC:
        close_fds(fds)
        raise FdPassError(f"message longer than {bufsize} bytes (MSG_TRUNC)")
    return data, fds


async def _wait(loop: asyncio.AbstractEventLoop, fd: int, *, writable: bool) -> None:
    """Wait once for ``fd`` to be ready, via the loop's own poller (works on uvloop)."""
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def async_send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> int:
    """``send_fds`` for a non-blocking socket: waits for room instead of failing."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return send_fds(sock, data, fds)
        except (BlockingIOError, InterruptedError):
            await _wait(loop, sock.fileno(), writable=True)


async def async_recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """``recv_fds`` for a non-blocking socket: waits for a message to arrive."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return recv_fds(sock, bufsize, maxfds)
        except (BlockingIOError, InterruptedError):
            await _wait(loop, sock.fileno(), writable=False)


__all__ = [
    "FdPassError",
    "async_recv_fds",
    "async_send_fds",
    "close_fds",
    "recv_fds",
    "send_fds",
]
