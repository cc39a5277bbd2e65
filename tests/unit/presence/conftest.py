"""Every presence test starts with an empty parsed-document cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from presence_b2b.presence.body import clear_cache


@pytest.fixture(autouse=True)
def _empty_body_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()
