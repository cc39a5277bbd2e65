"""The one TOML writer: what it writes, tomllib reads back as the same values."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_b2b.toml_writer import toml_tables, toml_value

SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)


@given(st.dictionaries(KEYS, st.dictionaries(KEYS, st.one_of(SCALARS, st.lists(SCALARS)))))
def test_tables_read_back_as_the_values_written(tables: dict[str, dict[str, object]]) -> None:
    assert tomllib.loads(toml_tables(tables)) == tables


def test_tuples_are_written_as_arrays() -> None:
    assert toml_value((1, 2)) == "[1, 2]"


def test_a_value_toml_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError):
        toml_value(None)
