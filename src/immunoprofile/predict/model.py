"""P(TFR grade ≥ 2) from the baseline immune profile: a small, transparent classifier.

The study (Chanan-Khan et al., *Cancer* 2011) found that baseline NK cells, CD8+ cells and
the CD4/CD8 ratio went with the intensity of the tumour flare reaction. With cohorts of
tens of patients, the model is deliberately simple: the logarithms of NK, CD4+ and CD8+
cells/µL and of the CD4/CD8 ratio (:mod:`.features`), standardised, in an L2-regularised
logistic regression (:mod:`.estimator`; optionally with the regimen and age). Anything
fancier would have to beat it in the same cross-validation (:mod:`.evaluation`) before
being offered. Here: the fitted model with what it was trained on (:class:`TFRModel`),
training (:func:`train`) and prediction with bootstrap intervals
(:func:`predict_patients`); a model is data, written and read by :mod:`.model_file`.

**Research use only.** The shipped default model is trained on
:func:`immunoprofile.study.reference_cohort.reference_cohort`, a SIMULATED cohort
reconstructed from the study's published aggregates; see ``models/MODEL_CARD.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ModelError
from .estimator import TFRClassifier
from .features import (
    FEATURE_SOURCES,
    IMMUNE_FEATURES,
    complete_rows,
    features_label,
    table_checksum,
    tfr_features,
)

#: Bootstrap refits stored with a model for its prediction intervals.
BOOTSTRAP_REFITS = 200
#: Default probability at or above which a patient is in the "high" risk class.
DEFAULT_THRESHOLD = 0.5


# --- features ------------------------------------------------------------------------------


# --- the estimator -------------------------------------------------------------------------


# --- a trained model: classifier + features + provenance -----------------------------------

@dataclass
class TFRModel:
    """A fitted :class:`TFRClassifier` with what is needed to apply and trust it.

    Attributes
    ----------
    classifier : TFRClassifier
    features : list of str
        Feature names, in the classifier's column order (see :data:`FEATURE_SOURCES`).
    training_ranges : dict
        Feature name → (min, max) in the training data, in the features' units (log).
    threshold : float
        P(TFR grade ≥ 2) at or above which the risk class is "high".
    training : dict
        Provenance: patients, events, the SHA-256 of the training table, what it is.
    package_version : str
    """

    classifier: TFRClassifier
    features: list[str]
    training_ranges: dict[str, tuple[float, float]]
    threshold: float = DEFAULT_THRESHOLD
    training: dict = field(default_factory=dict)
    package_version: str = ""
    bootstrap: np.ndarray | None = None

    def bootstrap_interval(self, features: pd.DataFrame, level: float = 0.95) -> np.ndarray:
        """Bootstrap interval of P(TFR grade ≥ 2) per row of ``features``, shape (n, 2);
        NaN if unknown. Each of the model's bootstrap refits (the training patients
        resampled with replacement, :data:`BOOTSTRAP_REFITS` times) gives a probability;
        the interval is their central ``level`` range. It shows how much the estimate
        depends on which patients were in the training set — not a calibrated confidence
        interval."""
        from scipy.special import expit

        X = features.to_numpy(float)
        out = np.full((len(X), 2), np.nan)
        if self.bootstrap is None or not len(self.bootstrap):
            return out
        ok = np.isfinite(X).all(axis=1)
        if ok.any():
            p = expit(self.bootstrap[:, :1].T + X[ok] @ self.bootstrap[:, 1:].T)
            tail = 50 * (1 - level)
            out[ok] = np.percentile(p, [tail, 100 - tail], axis=1).T
        return out

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """P(TFR grade ≥ 2) for each row of a profile/cohort table (NaN if inputs missing)."""
        return self._proba(tfr_features(table, self.features))

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.full(len(X), np.nan)
        ok = X.notna().all(axis=1).to_numpy()
        if ok.any():
            p[ok] = self.classifier.predict_proba(X.to_numpy()[ok])[:, 1]
        return p


def train(cohort: pd.DataFrame, features: Sequence[str] = IMMUNE_FEATURES, C: float = 1.0,
          threshold: float = DEFAULT_THRESHOLD, description: str = "") -> TFRModel:
    """Fit a :class:`TFRModel` on a cohort with TFR grades and immune profiles.

    Parameters
    ----------
    cohort : pandas.DataFrame
        Rows with ``tfr_grade`` and every feature's source column; rows missing any are
        left out (their number is recorded in ``model.training``).
    features : sequence of str
        Default: the four log immune features.
    C : float
        Inverse regularisation strength on standardised features.
    threshold : float
        Risk-class threshold stored with the model, in (0, 1).
    description : str
        What the training data are (stored in the model file).

    Raises
    ------
    ModelError
        Fewer than 2 patients in either outcome class after dropping missing rows.
    """
    from .._version import __version__

    if not 0.0 < threshold < 1.0:
        raise ModelError(f"threshold {threshold} is not a probability strictly in (0, 1)")
    if not (math.isfinite(C) and C > 0):
        raise ModelError(f"C = {C}: the regularisation must be a finite number > 0")
    X, y, dropped = complete_rows(cohort, features)
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        raise ModelError(f"training needs at least 2 patients with TFR grade >= 2 and 2 "
                         f"below; the cohort has {int(y.sum())} and {int((1 - y).sum())} "
                         f"with all of {', '.join(features)}")
    clf = TFRClassifier(C=C).fit(X.to_numpy(), y.to_numpy())
    ranges = {f: (float(X[f].min()), float(X[f].max())) for f in features}
    boot = _bootstrap_refits(X.to_numpy(), y.to_numpy(), C, BOOTSTRAP_REFITS)
    label = features_label(features)
    if label:  # a model that also uses regimen or age says so wherever it is described
        description = f"{description}; {label}" if description else label
    training = {"patients": int(len(y)), "grade_2_or_more": int(y.sum()),
                "rows_left_out_missing_values": int(dropped),
                "sha256": table_checksum(cohort), "description": description}
    return TFRModel(clf, list(features), ranges, float(threshold), training, __version__,
                    boot)


def _bootstrap_refits(X: np.ndarray, y: np.ndarray, C: float, refits: int,
                      seed: int = 0) -> np.ndarray:
    """Refit on resampled patients (each class resampled within itself, so both stay);
    returns rows ``[intercept, w_1 … w_k]`` of the log-odds on the raw features."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rows = []
    for _ in range(refits):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        clf = TFRClassifier(C=C).fit(X[idx], y[idx])
        w = clf.coef_[0] / clf.scale_
        rows.append([float(clf.intercept_[0] - w @ clf.mean_), *map(float, w)])
    return np.asarray(rows)


# --- predictions for patients --------------------------------------------------------------

PREDICTION_COLUMNS = ["patient_id", "p_tfr_grade_2_or_more", "p_low_95", "p_high_95",
                      "risk_class", "threshold", "outside_training_range",
                      "outside_features", "note"]


def predict_patients(model: TFRModel, profiles: pd.DataFrame) -> pd.DataFrame:
    """Per-patient P(TFR grade ≥ 2), risk class and an out-of-range flag.

    Parameters
    ----------
    model : TFRModel
    profiles : pandas.DataFrame
        ``profiles.csv`` of ``immunoprofile gate`` (cells/µL), joined with the cohort's
        clinical columns when the model uses them.

    Returns
    -------
    pandas.DataFrame
        :data:`PREDICTION_COLUMNS`: ``risk_class`` is ``high`` when the probability is at
        or above ``threshold``, else ``low``; ``outside_training_range`` is True when any
        input lies outside the range the model was trained on (the estimate is then an
        extrapolation); ``note`` says why a patient has no prediction.
    """
    X = tfr_features(profiles, model.features)
    p = model._proba(X)
    interval = model.bootstrap_interval(X)
    rows = []
    for i, pid in enumerate(profiles["patient_id"].astype(str)):
        x = X.iloc[i]
        missing = [f for f in model.features if not np.isfinite(x[f])]
        outside = [f for f in model.features if f not in missing and not
                   (model.training_ranges[f][0] <= x[f] <= model.training_ranges[f][1])]
        if missing:
            rows.append((pid, np.nan, np.nan, np.nan, "", model.threshold, False, "",
                         "no prediction: missing " + ", ".join(
                             FEATURE_SOURCES[f][0] for f in missing)))
            continue
        rows.append((pid, float(p[i]), float(interval[i, 0]), float(interval[i, 1]),
                     "high" if p[i] >= model.threshold else "low",
                     model.threshold, bool(outside), ";".join(outside), ""))
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


# --- JSON, never pickle ----------------------------------------------------------------------


# --- evaluation ------------------------------------------------------------------------------


