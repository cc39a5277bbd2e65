"""Shared fixtures for the ring tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from presence_b2b.ipc.ring import Ring


@pytest.fixture
def small_ring() -> Iterator[Ring]:
    """A fresh 4 KiB ring, the smallest there is, so the wrap comes early."""
    r = Ring.create(4096, generation=7)
    yield r
    r.close()
