"""eventfd doorbells for the shared-memory rings.

A ring has two: *data-ready* (rung by the producer, waited on by the consumer)
and *space-free* (rung by the consumer, waited on by the producer). A doorbell
carries no data; the ring's counters say what happened. It only wakes a peer
that has announced, through a flag in the ring header, that it is about to
sleep. Spurious wake-ups are harmless: the woken side re-reads the counters.

The eventfds are always used non-blocking (``EFD_NONBLOCK``); a waiter polls
the fd (or registers it with the event loop) and then drains it with one read.
O_NONBLOCK belongs to the open file description, so setting it on a received
fd sets it for the peer too, which uses the fd the same way.
"""

from __future__ import annotations

import os
import select

__all__ = ["Doorbell", "DoorbellError"]


class DoorbellError(Exception):
    """The file descriptor is not an eventfd."""


def _check_eventfd(fd: int) -> None:
    """Refuse a fd that is not an eventfd (checked through /proc when mounted)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError as exc:
        raise DoorbellError(f"fd {fd} is not open") from exc
    except OSError:
        return  # no /proc: the kernel will refuse a bad fd at the first read or write
    if target != "anon_inode:[eventfd]":
        raise DoorbellError(f"fd {fd} is not an eventfd ({target})")


class Doorbell:
    """One eventfd used as a wake-up signal. Owns its fd."""

    __slots__ = ("_fd", "_poll")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @classmethod
    def create(cls) -> Doorbell:
        """A fresh non-blocking, close-on-exec eventfd with a count of zero."""
        return cls(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))

    @classmethod
    def adopt(cls, fd: int) -> Doorbell:
        """Take over a received fd after checking it is an eventfd; make it non-blocking."""
        _check_eventfd(fd)
        os.set_blocking(fd, False)
        return cls(fd)

    @property
    def fd(self) -> int:
        """The eventfd, for fd passing and ``loop.add_reader``."""
        return self._fd

    def fileno(self) -> int:
        """The eventfd, so a doorbell can be given to ``select`` and friends."""
        return self._fd

    def ring(self) -> None:
        """Wake the waiter. Never blocks: a saturated counter already means "wake up"."""
        try:  # noqa: SIM105 (hot path: contextlib.suppress costs more than the write)
            os.eventfd_write(self._fd, 1)
        except BlockingIOError:
            pass

    def drain(self) -> int:
        """Reset the counter; return how many rings it held (0 if none)."""
        try:
            return os.eventfd_read(self._fd)
        except BlockingIOError:
            return 0

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for a ring; drain it.

        Returns False on timeout. EINTR is retried by ``poll`` itself (PEP 475).
        """
        ms = None if timeout is None else max(0, int(timeout * 1000.0 + 0.999))
        if not self._poll.poll(ms):
            return False
        self.drain()
        return True

    def close(self) -> None:
        """Close the eventfd (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
