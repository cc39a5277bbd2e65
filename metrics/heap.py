"""Where a process's memory is: pymalloc's arenas, the C heap, the RSS.

The RSS per subscription has a goal, and what fills it is either live
objects or room the allocators keep around them: blocks free in pools that
hold live ones, wholly free pools in arenas that cannot be returned, and the
C heap's free chunks. These figures tell which, per process, on an
operator's request (``ctl memory``). Never on a hot path: CPython walks
every arena to count them (a few ms at a million subscriptions).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
import tempfile
from typing import Any

import psutil

__all__ = ["heap_figures", "parse_pymalloc_stats"]

_STAT = re.compile(r"^# (?P<label>[a-z ]+?)\s*=\s*(?P<value>[\d,]+)\s*$")
_UNUSED = re.compile(r"^(?P<pools>\d+) unused pools \* (?P<size>\d+) bytes\s*=")
_ARENAS = re.compile(r"^(?P<arenas>\d+) arenas \* (?P<size>\d+) bytes/arena\s*=")


def parse_pymalloc_stats(text: str) -> dict[str, int]:
    """The totals of ``sys._debugmallocstats()``'s report, in bytes (empty when
    the build has no pymalloc)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if m := _ARENAS.match(line):
            out["arenas_bytes"] = int(m["arenas"]) * int(m["size"])
        elif m := _UNUSED.match(line):
            out["unused_pools_bytes"] = int(m["pools"]) * int(m["size"])
        elif m := _STAT.match(line):
            label, value = m["label"], int(m["value"].replace(",", ""))
            if label == "bytes in allocated blocks":
                out["allocated_blocks_bytes"] = value
            elif label == "bytes in available blocks":
                out["available_blocks_bytes"] = value
    return out


def _pymalloc_report() -> str:
    """What ``sys._debugmallocstats()`` writes to the C stderr, captured.

    For the few milliseconds of the capture, fd 2 is a temporary file: every
    logging handler is held locked meanwhile, so a line another thread logs
    (a shard's store writer) waits and goes to the real stderr afterwards."""
    handlers = [h for logger in _loggers() for h in logger.handlers]
    for handler in handlers:
        handler.acquire()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as capture:
                os.dup2(capture.fileno(), 2)
                try:
                    sys._debugmallocstats()
                finally:
                    os.dup2(saved, 2)
                capture.seek(0)
                return capture.read().decode("ascii", "replace")
        finally:
            os.close(saved)
    finally:
        for handler in reversed(handlers):
            handler.release()


def _loggers() -> list[logging.Logger]:
    """The root logger and every logger made so far (each may have handlers)."""
    made = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(x for x in made if isinstance(x, logging.Logger))]


_MALLINFO2_FIELDS = (
    "arena", "ordblks", "smblks", "hblks", "hblkhd",
    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
)


def _malloc_figures() -> dict[str, int]:
    """glibc's heap: bytes from the system (brk and mmap), in use, and free in it.
    Empty where there is no ``mallinfo2`` (another C library, glibc < 2.33)."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return {
        "heap_bytes": int(info.arena),
        "mmapped_bytes": int(info.hblkhd),
        "in_use_bytes": int(info.uordblks),
        "free_bytes": int(info.fordblks),
    }


def heap_figures() -> dict[str, Any]:
    """RSS, pymalloc's and the C heap's figures of this process."""
    return {
        "rss_bytes": psutil.Process().memory_info().rss,
        "pymalloc": parse_pymalloc_stats(_pymalloc_report()),
        "malloc": _malloc_figures(),
    }
