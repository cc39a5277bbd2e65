"""Fixtures for the metrics tests: fresh blocks and a scrape helper."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from metrics_helpers import Scrape
from presence_b2b.metrics import MetricsBlocks, make_registry
from prometheus_client import generate_latest


@pytest.fixture
def blocks() -> Iterator[MetricsBlocks]:
    b = MetricsBlocks(2)
    yield b
    b.close()


@pytest.fixture
def scrape(blocks: MetricsBlocks) -> Scrape:
    """The exposition text a scrape of these blocks returns (supervisor pid only)."""
    registry = make_registry(blocks, lambda: {"supervisor": os.getpid()})
    return lambda: generate_latest(registry).decode()
