"""Result tables: named columns of one kind each, written as CSV without pandas.

``immunoprofile gate`` builds its tables and writes them without importing pandas (0.2 s
of every run otherwise). A :class:`Table` writes CSV byte for byte as pandas'
``DataFrame.to_csv(index=False, lineterminator="\\n")`` writes the same columns — floats as
their shortest round-trip form (``repr``), NaN and None as empty fields, quoting by
Python's ``csv`` module as pandas does it — and becomes that DataFrame on request
(:meth:`Table.to_pandas`; pandas is imported then). A test holds the two to the same bytes.

A float column may carry a *precision* (:class:`Decimals`, :class:`Significant`): the
table keeps its values exact for whatever is computed from them, and writes them — in the
CSV and in the DataFrame alike — rounded to the digits the measurement carries, so a count
of 2345.7 cells/µL is not printed as 2345.6789012345678.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Column kinds and their pandas dtypes.
KINDS = {"int": "int64", "float": "float64", "str": "object", "bool": "bool"}


@dataclass(frozen=True)
class Decimals:
    """Round to ``places`` decimal places; a value below 1 in magnitude keeps ``small``
    significant digits instead, so a small non-zero value is never written as 0.

    >>> Decimals(1)(2345.6789), Decimals(1)(0.0431), Decimals(1)(float("nan"))
    (2345.7, 0.043, nan)
    """

    places: int
    small: int = 2

    def __call__(self, value: float) -> float:
        value = float(value)
        if not math.isfinite(value) or value == 0.0:
            return value
        if abs(value) < 1.0:
            return Significant(self.small)(value)
        return round(value, self.places)


@dataclass(frozen=True)
class Significant:
    """Round to ``digits`` significant digits.

    >>> Significant(4)(1.2345678), Significant(4)(123456.7), Significant(4)(0.000123456)
    (1.235, 123500.0, 0.0001235)
    """

    digits: int

    def __call__(self, value: float) -> float:
        value = float(value)
        if not math.isfinite(value) or value == 0.0:
            return value
        return float(f"{value:.{self.digits}g}")


class Table:
    """An ordered set of equally long columns, each of one kind.

    Parameters
    ----------
    columns : dict of str to list
        Column name → values, in column order.
    kinds : dict of str to str
        Column name → ``"int"``, ``"float"``, ``"str"`` or ``"bool"``. For ``"str"``,
        None and float NaN are missing values (empty fields).
    precision : dict of str to callable, optional
        Float column name → rounding applied when the table is written (:meth:`to_csv`,
        :meth:`to_pandas`), e.g. :class:`Decimals` or :class:`Significant`. Indexing the
        table gives the exact values.
    """

    def __init__(self, columns: dict[str, Sequence], kinds: dict[str, str],
                 precision: dict[str, Callable[[float], float]] | None = None):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        unknown = set(kinds.values()) - set(KINDS)
        if unknown or set(kinds) != set(columns):
            raise ValueError("every column needs a kind: int, float, str or bool")
        self._columns = {name: list(values) for name, values in columns.items()}
        self._kinds = dict(kinds)
        self._precision = {name: rounding for name, rounding in (precision or {}).items()
                           if name in self._columns}
        if any(self._kinds[name] != "float" for name in self._precision):
            raise ValueError("a precision is for float columns only")

    @classmethod
    def from_records(cls, records: Sequence[dict], kinds: dict[str, str],
                     precision: dict[str, Callable[[float], float]] | None = None) -> Table:
        """A table from one dict per row (``kinds`` gives the column order)."""
        return cls({name: [r[name] for r in records] for name in kinds}, kinds, precision)

    @property
    def columns(self) -> list[str]:
        """Column names, in order."""
        return list(self._columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()), []))

    def __getitem__(self, name: str) -> list:
        return self._columns[name]

    def kind(self, name: str) -> str:
        """The kind of one column."""
        return self._kinds[name]

    def written(self, name: str) -> list:
        """One column's values as the table writes them (rounded to its precision)."""
        rounding = self._precision.get(name)
        values = self._columns[name]
        return list(values) if rounding is None else [rounding(v) for v in values]

    def add_column(self, name: str, values: Sequence, kind: str) -> None:
        """Append a column (as long as the others)."""
        if len(values) != len(self) and self._columns:
            raise ValueError(f"column {name} has {len(values)} values, not {len(self)}")
        self._columns[name] = list(values)
        self._kinds[name] = kind

    def rows(self) -> Iterator[dict]:
        """One dict per row."""
        names = self.columns
        for values in zip(*(self._columns[n] for n in names), strict=True):
            yield dict(zip(names, values, strict=True))

    def to_csv(self) -> str:
        """The table as CSV text: a header, then one line per row (``\\n`` line ends)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        formats = [_FORMAT[self._kinds[n]] for n in self.columns]
        for values in zip(*(self.written(n) for n in self.columns), strict=True):
            writer.writerow([f(v) for f, v in zip(formats, values, strict=True)])
        return out.getvalue()

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame, one dtype per kind (``int64``, ``float64``,
        ``object``, ``bool``)."""
        import numpy as np
        import pandas as pd

        data = {}
        for name in self._columns:
            values, kind = self.written(name), self._kinds[name]
            if kind == "str":
                column = np.empty(len(values), dtype=object)
                column[:] = [None if _missing(v) else v for v in values]
                data[name] = column
            else:
                data[name] = np.asarray(values, dtype=KINDS[kind])
        return pd.DataFrame(data, columns=self.columns)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _float(value) -> str:
    number = float(value)
    return "" if math.isnan(number) else repr(number)


def _int(value) -> str:
    return str(int(value))


def _str(value) -> str:
    return "" if _missing(value) else str(value)


def _bool(value) -> str:
    return "True" if value else "False"


_FORMAT = {"float": _float, "int": _int, "str": _str, "bool": _bool}
