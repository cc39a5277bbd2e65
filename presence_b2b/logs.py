"""Log lines on stderr that journald keeps well.

Under systemd (JOURNAL_STREAM set) a line carries no timestamp of its own,
since journald adds one, and starts with a ``<N>`` syslog priority that
journald turns into the entry's level. Elsewhere it is a plain timestamped line.
Supervisor and shards use the same format.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s: %(message)s" if journal else (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            prefix = f"<{_PRIORITY.get(record.levelname, 6)}>"
            text = prefix + text.replace("\n", "\n" + prefix)
        return text


def setup(level: str) -> None:
    """Replace the root handlers with one stderr handler at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
