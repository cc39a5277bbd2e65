"""Strings packed behind their lengths come back as they went in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_b2b.packed_strings import pack_strings, unpack_strings


@given(st.lists(st.text(), max_size=6), st.binary(max_size=8))
def test_what_is_unpacked_after_any_prefix_is_what_was_packed(
    values: list[str], prefix: bytes
) -> None:
    assert unpack_strings(prefix + pack_strings(*values), len(prefix)) == values


def test_a_lone_surrogate_the_parser_kept_comes_back_as_it_was() -> None:
    raw = b"sip:\xff@x".decode("utf-8", "surrogateescape")
    assert unpack_strings(pack_strings(raw)) == [raw]


def test_a_string_over_64_kib_is_refused() -> None:
    with pytest.raises(OverflowError):
        pack_strings("x" * 65_536)
