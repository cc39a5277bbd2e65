"""The memory report: pymalloc's and malloc's figures of this process, read as they are."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from presence_b2b.metrics.heap import _pymalloc_report, heap_figures, parse_pymalloc_stats

REPORT = """Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    0     16           1              43           978

# arenas allocated total           =                    3
# arenas reclaimed                 =                    0
# arenas highwater mark            =                    3
# arenas allocated current         =                    3
3 arenas * 1048576 bytes/arena     =            3,145,728

# bytes in allocated blocks        =            2,183,248
# bytes in available blocks        =              289,424
39 unused pools * 16384 bytes      =              638,976
# bytes lost to pool headers       =                7,296
Total                              =            3,145,728
"""


def test_the_totals_of_a_pymalloc_report_are_read_in_bytes() -> None:
    assert parse_pymalloc_stats(REPORT) == {
        "arenas_bytes": 3 * 1048576,
        "allocated_blocks_bytes": 2_183_248,
        "available_blocks_bytes": 289_424,
        "unused_pools_bytes": 39 * 16384,
    }


def test_a_report_without_pymalloc_gives_no_figures() -> None:
    assert parse_pymalloc_stats("Small block threshold: pymalloc is off\n") == {}


def test_live_objects_show_in_the_allocated_blocks() -> None:
    before = heap_figures()["pymalloc"]["allocated_blocks_bytes"]
    kept = [bytes(200) for _ in range(20_000)]
    after = heap_figures()["pymalloc"]["allocated_blocks_bytes"]
    assert after - before >= 20_000 * 200
    del kept


def test_reading_the_report_leaves_stderr_where_it_was(capfd) -> None:  # type: ignore[no-untyped-def]
    _pymalloc_report()
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"


def test_the_c_heap_is_reported_on_glibc() -> None:
    malloc = heap_figures()["malloc"]
    assert malloc["in_use_bytes"] > 0 and malloc["heap_bytes"] + malloc["mmapped_bytes"] > 0


class _Fd2:
    """A stream that writes to whatever fd 2 is at the time, as a journal handler does."""

    def write(self, text: str) -> None:
        os.write(2, text.encode())

    def flush(self) -> None:
        """Nothing is buffered: each write went to fd 2 at once."""


def test_a_line_logged_by_another_thread_during_the_capture_reaches_stderr(  # type: ignore[no-untyped-def]
    capfd, monkeypatch
) -> None:
    logger = logging.getLogger("heap-test")
    handler = logging.StreamHandler(_Fd2())
    logger.addHandler(handler)
    writer = threading.Thread(target=logger.warning, args=("from the writer",))

    def report_while_another_thread_logs() -> None:
        writer.start()
        time.sleep(0.2)  # the writer waits for the handler's lock meanwhile
        os.write(2, b"# bytes in allocated blocks        =              1,000\n")

    monkeypatch.setattr(sys, "_debugmallocstats", report_while_another_thread_logs)
    try:
        report = _pymalloc_report()
        writer.join()
    finally:
        logger.removeHandler(handler)
    assert "allocated blocks" in report and "from the writer" not in report
    assert capfd.readouterr().err == "from the writer\n"
