"""Tables written without pandas are the bytes pandas writes for the same DataFrame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immunoprofile.io.table import Table

TRICKY = [0.0, -0.0, 0.1, 1 / 3, 2 / 3, 1e-5, 1e-4, 9.999e-5, 1e15, 1e16, 9.99e15,
          123456789012345678.0, 5e-324, 1.7976931348623157e308, math.inf, -math.inf,
          math.nan, 25000.0, 100.0 * 937 / 4000, 12.5, -3.25e-12, 2.0**53 + 2]


def _same_as_pandas(table: Table) -> None:
    frame = table.to_pandas()
    assert table.to_csv() == frame.to_csv(index=False, lineterminator="\n")


def test_tricky_values_and_text():
    n = len(TRICKY)
    table = Table({
        "f": TRICKY,
        "i": list(range(-3, n - 3)),
        "s": ["a", "b,c", 'q"uote', "line\nbreak", " pad ", "", None, math.nan, "é", "x\ry",
              "tab\t", ";", "NA", "nan", "True", "-", "1.0", "0", "a;b", "#", "'", "z"],
        "b": [i % 2 == 0 for i in range(n)],
    }, {"f": "float", "i": "int", "s": "str", "b": "bool"})
    _same_as_pandas(table)


def test_numpy_scalars_and_empty_tables():
    table = Table({"f": list(np.array([0.1, np.nan, 7.0]) * 3), "i": list(np.arange(3))},
                  {"f": "float", "i": "int"})
    _same_as_pandas(table)
    empty = Table({"f": [], "s": []}, {"f": "float", "s": "str"})
    assert empty.to_csv() == "f,s\n"
    assert list(empty.to_pandas().columns) == ["f", "s"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
def test_random_floats(values):
    _same_as_pandas(Table({"x": values}, {"x": "float"}))


def test_columns_must_agree():
    with pytest.raises(ValueError, match="different lengths"):
        Table({"a": [1], "b": [1, 2]}, {"a": "int", "b": "int"})
    with pytest.raises(ValueError, match="needs a kind"):
        Table({"a": [1]}, {"a": "complex"})
    assert pd.api.types.is_float_dtype(Table({"a": [1]}, {"a": "float"}).to_pandas()["a"])
