"""The TFR classifier's inputs: features from a profile or cohort table (logarithms of the
immune profile's columns, floored; optional regimen and age), the outcome (TFR grade ≥ 2),
and the checksum of a training table."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..profile.columns import IMMUNE_PROFILE

#: Features of the default model, built by :func:`tfr_features` from profile columns: the
#: log of every column of the immune profile.
IMMUNE_FEATURES = [f"log_{c.name}" for c in IMMUNE_PROFILE]


#: Optional clinical features: 1 for regimen B (10 mg + escalation + prednisone); years.
CLINICAL_FEATURES = ["regimen_b", "age"]


#: Source column and transform of every feature a model may use.
FEATURE_SOURCES = {
    **{f"log_{c.name}": (c.name, "log") for c in IMMUNE_PROFILE},
    "regimen_b": ("regimen", "is_b"),
    "age": ("age", "identity"),
}


#: Values are floored before the log, so an empty gate (0 cells/µL) gives a finite
#: feature (:attr:`~immunoprofile.profile.columns.ImmuneColumn.log_floor`).
LOG_FLOORS = {c.name: c.log_floor for c in IMMUNE_PROFILE}


#: How clinical features are named in a model's description and summary.
_CLINICAL_LABELS = {"regimen_b": "regimen (A/B)", "age": "age (years)"}


def tfr_features(table: pd.DataFrame, features: Sequence[str] = IMMUNE_FEATURES
                 ) -> pd.DataFrame:
    """The classifier's inputs from a profile or cohort table.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``nk_per_ul``, ``cd4_per_ul``, ``cd8_per_ul``, ``cd4_cd8_ratio`` (cells/µL;
        the ratio unitless) and, for the clinical features, ``regimen`` (A/B) and ``age``
        (years).
    features : sequence of str
        Names from :data:`FEATURE_SOURCES`.

    Returns
    -------
    pandas.DataFrame
        One column per feature, same index; NaN where a source value is missing. Log
        features use the natural logarithm of the value floored at :data:`LOG_FLOORS`.

    Raises
    ------
    ModelError
        An unknown feature, or a source column absent from ``table``.
    """
    out = pd.DataFrame(index=table.index)
    for name in features:
        if name not in FEATURE_SOURCES:
            raise ModelError(f"unknown feature {name!r} (known: {', '.join(FEATURE_SOURCES)})")
        column, transform = FEATURE_SOURCES[name]
        if column not in table.columns:
            hint = (" — pass the cohort table (--cohort) for clinical features"
                    if name in CLINICAL_FEATURES else "")
            raise ModelError(f"feature {name} needs column {column}, which the table "
                             f"lacks{hint}")
        values = table[column]
        if transform == "log":
            v = pd.to_numeric(values, errors="coerce").astype(float)
            out[name] = np.log(np.maximum(v, LOG_FLOORS[column]))
        elif transform == "is_b":
            out[name] = values.map({"A": 0.0, "B": 1.0}).astype(float)
        else:
            out[name] = pd.to_numeric(values, errors="coerce").astype(float)
    return out


def tfr_outcome(table: pd.DataFrame) -> pd.Series:
    """1.0 where ``tfr_grade`` ≥ 2, 0.0 where lower, NaN where unknown."""
    grade = pd.to_numeric(table["tfr_grade"], errors="coerce").astype(float)
    return (grade >= 2).astype(float).where(grade.notna())


def features_label(features: Sequence[str]) -> str:
    """How a model's clinical features are named ("" for a model of the immune profile
    alone), e.g. ``"uses regimen (A/B) and age (years) besides the immune profile"``."""
    extra = [_CLINICAL_LABELS.get(f, f) for f in features if f not in IMMUNE_FEATURES]
    if not extra:
        return ""
    return f"uses {' and '.join(extra)} besides the immune profile"


def complete_rows(cohort: pd.DataFrame, features: Sequence[str]):
    if "tfr_grade" not in cohort.columns:
        raise ModelError("the cohort has no tfr_grade column")
    X = tfr_features(cohort, features)
    y = tfr_outcome(cohort)
    ok = X.notna().all(axis=1) & y.notna()
    return X[ok].reset_index(drop=True), y[ok].reset_index(drop=True), int((~ok).sum())


def table_checksum(table: pd.DataFrame) -> str:
    """SHA-256 of a table's CSV text (columns sorted): identifies the training data."""
    text = table.reindex(sorted(table.columns), axis=1).to_csv(index=False,
                                                               lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
