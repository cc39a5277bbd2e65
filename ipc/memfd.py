"""Sealed memfd backing store for the shared-memory rings.

A ring lives in an anonymous memory file (``memfd_create``), never in a name
under /dev/shm: nothing leaks when a process dies and no stranger can open it.
The creator sizes the file with ``ftruncate`` and then seals it with
``F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL``. The seals are what make it safe
to map a file handed over by an untrusted peer: a mapping of a file that
shrinks under it raises SIGBUS on the next access, and a sealed file cannot
shrink (or grow) any more, for anyone.

Whoever attaches a memfd it did not create checks the seals first
(:func:`check_sealed`) and refuses a file that is not a memfd, is not sealed
against shrink and grow, is sealed against writes, or has the wrong size.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

__all__ = [
    "CREATE_SEALS",
    "REQUIRED_SEALS",
    "MemfdError",
    "check_sealed",
    "create_sealed",
    "get_seals",
    "map_shared",
]

#: F_SEAL_FUTURE_WRITE (Linux 5.1); the fcntl module does not export it.
F_SEAL_FUTURE_WRITE = 0x0010

#: Seals an attaching side insists on: the size can never change again.
REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
#: Seals the creating side applies: the above, and no seal can be added later.
CREATE_SEALS = REQUIRED_SEALS | fcntl.F_SEAL_SEAL

_SEAL_NAMES = {
    fcntl.F_SEAL_SEAL: "seal",
    fcntl.F_SEAL_SHRINK: "shrink",
    fcntl.F_SEAL_GROW: "grow",
    fcntl.F_SEAL_WRITE: "write",
    F_SEAL_FUTURE_WRITE: "future-write",
}


class MemfdError(Exception):
    """The file descriptor is not a memfd that a ring can safely map."""


def _seal_names(seals: int) -> str:
    return "|".join(name for bit, name in _SEAL_NAMES.items() if seals & bit) or "none"


def create_sealed(size: int, name: str = "presence-b2b-ring") -> int:
    """Create a close-on-exec memfd of ``size`` bytes, sealed against any resize.

    Returns the fd; the caller owns it.
    """
    if size <= 0:
        raise ValueError(f"memfd size must be positive, not {size}")
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, CREATE_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def get_seals(fd: int) -> int:
    """Return the seals of ``fd``; a fd that cannot carry seals is not a memfd."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise MemfdError(f"fd {fd} is not a memfd (F_GET_SEALS: EINVAL)") from exc
        raise MemfdError(f"fd {fd}: F_GET_SEALS failed: {exc.strerror}") from exc


def check_sealed(fd: int, min_size: int, max_size: int) -> int:
    """Check that ``fd`` is a memfd sealed against shrink and grow; return its size.

    Refuses, with :class:`MemfdError` naming the problem, a fd that is not a
    memfd, lacks the shrink or grow seal, is sealed against writes (the ring
    must be writable by both sides), or whose size is outside the bounds.
    """
    seals = get_seals(fd)
    missing = REQUIRED_SEALS & ~seals
    if missing:
        raise MemfdError(
            f"memfd is not sealed against {_seal_names(missing)} "
            f"(seals: {_seal_names(seals)}); refusing to map it"
        )
    if seals & (fcntl.F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
        raise MemfdError(f"memfd is sealed against writes (seals: {_seal_names(seals)})")
    size = os.fstat(fd).st_size
    if not min_size <= size <= max_size:
        raise MemfdError(f"memfd size {size} is outside [{min_size}, {max_size}]")
    return size


def map_shared(fd: int, size: int) -> mmap.mmap:
    """Map ``size`` bytes of ``fd`` shared, read-write, with the pages faulted in up front."""
    try:
        return mmap.mmap(
            fd,
            size,
            flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
        )
    except OSError as exc:
        raise MemfdError(f"cannot map memfd read-write: {exc.strerror}") from exc
