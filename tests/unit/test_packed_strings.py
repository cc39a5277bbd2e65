"""Strings packed behind their lengths come back as they went in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_b2b.packed_strings import pack_counts, pack_strings, unpack_counts, unpack_strings


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


@given(st.lists(st.integers(min_value=0, max_value=2**70), max_size=20), st.binary(max_size=4))
def test_counts_come_back_as_they_went_in_and_say_where_they_end(
    values: list[int], tail: bytes
) -> None:
    out = bytearray(b"head")
    pack_counts(out, tuple(values))
    data = bytes(out) + tail
    assert unpack_counts(data, 4, len(values)) == (values, len(data) - len(tail))


def test_a_count_below_128_takes_one_byte() -> None:
    out = bytearray()
    pack_counts(out, (0, 1, 127, 128, 3600))
    assert len(out) == 3 + 2 + 2


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(OverflowError):
        pack_counts(bytearray(), (1, -1))


def test_counts_cut_short_are_an_error() -> None:
    out = bytearray()
    pack_counts(out, (300,))
    with pytest.raises(ValueError):
        unpack_counts(bytes(out[:1]), 0, 1)
