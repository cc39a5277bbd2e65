"""docs/configuration.md names every key the code knows, with its default."""

import re
from pathlib import Path

from presence_b2b import config

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def test_every_configuration_key_is_documented() -> None:
    missing = [key for key, _, _ in config.describe() if f"`{key.split('.')[1]}`" not in DOC]
    assert missing == []


def test_every_table_has_a_section() -> None:
    for table in ("presence_b2b", "sip", "server", "metrics", "auth", "dns", "store"):
        assert f"## `[{table}]`" in DOC


def test_the_headers_listed_as_refused_are_the_ones_the_code_refuses() -> None:
    listed = DOC.split("the headers the service writes into every SUBSCRIBE itself:")[1]
    listed = listed.split("(use `presence_route`)")[0]
    assert set(re.findall(r"`([A-Za-z-]+)`", listed)) == set(config.STACK_HEADERS)
