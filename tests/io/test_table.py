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


def test_precision_rounds_what_is_written_and_keeps_exact_values():
    from immunoprofile.io.table import Decimals, Significant

    exact = [2345.678901234567, 0.04312345, 0.0, math.nan, 303915.04999, math.inf]
    ratio = [1.9731234567, 0.0123456789, 12345.678, math.nan, 1.0, 2 / 3]
    table = Table({"cells": exact, "ratio": ratio}, {"cells": "float", "ratio": "float"},
                  {"cells": Decimals(1), "ratio": Significant(4)})
    assert table["cells"] == exact  # exact for whatever is computed from the table
    assert table.to_csv().splitlines()[1:] == [
        "2345.7,1.973", "0.043,0.01235", "0.0,12350.0", ",", "303915.0,1.0", "inf,0.6667"]
    _same_as_pandas(table)
    assert table.to_pandas()["cells"][0] == 2345.7
    with pytest.raises(ValueError, match="float columns only"):
        Table({"n": [1]}, {"n": "int"}, {"n": Decimals(1)})


def _decimals(field: str) -> int:
    return len(field.split(".")[1]) if "." in field and "e" not in field else 0


def _significant(field: str) -> int:
    digits = field.replace("-", "").replace(".", "").lstrip("0").split("e")[0]
    return len(digits.rstrip("0")) if "." in field else len(digits)


def test_gate_tables_carry_the_digits_the_counts_carry(small_cohort):
    """cells/µL to 0.1, ratios, % and CVs to 4 significant digits — not 17."""
    import csv
    import io

    from immunoprofile import gate_batch

    result = gate_batch(small_cohort)
    checked = 0
    for name in ("populations", "profiles"):
        rows = list(csv.DictReader(io.StringIO(result.tables[name].to_csv())))
        for row in rows:
            for column, field in row.items():
                if not field or column in ("alc",) or field[0] not in "-0123456789":
                    continue
                if "_per_ul" in column:
                    small = abs(float(field)) < 1
                    assert (_significant(field) <= 2 if small else _decimals(field) <= 1), \
                        (column, field)
                elif column.startswith(("pct_", "count_cv", "cd4_cd8_ratio", "cd4_plus")) \
                        or column.endswith("_spread"):
                    assert _significant(field) <= 4, (column, field)
                else:
                    continue
                checked += 1
    assert checked > 100
    # Rounding is all that changed: the exact values are a hair away.
    exact = result.tables["profiles"]["cd4_cd8_ratio"]
    written = result.profiles["cd4_cd8_ratio"]
    assert np.allclose(written, exact, rtol=5e-4)
    cells = result.tables["populations"]["cells_per_ul"]
    assert np.allclose(result.populations["cells_per_ul"], cells, atol=0.05, equal_nan=True)
