"""P(TFR grade ≥ 2) from the baseline immune profile: a small, transparent classifier.

The study (Chanan-Khan et al., *Cancer* 2011) found that baseline NK cells, CD8+ cells and
the CD4/CD8 ratio went with the intensity of the tumour flare reaction. With cohorts of
tens of patients, the model is deliberately simple: the logarithms of NK, CD4+ and CD8+
cells/µL and of the CD4/CD8 ratio, standardised, in an L2-regularised logistic regression
(optionally with the regimen and age). Anything fancier would have to beat it in the same
cross-validation (:func:`evaluate`) before being offered.

A model is data: :func:`save_model` writes JSON (coefficients, scaler, feature list,
training ranges, a checksum of the training data, the package version, and a checksum of
all of it); :func:`load_model` refuses a malformed file, and one altered after it was saved
unless whoever altered it also recomputed the checksum — the checksum guards against
corruption and hand edits, it is not a signature. Every field is range-checked as well.
Never pickle.

**Research use only.** The shipped default model is trained on
:func:`immunoprofile.study.reference_cohort.reference_cohort`, a SIMULATED cohort reconstructed
from the study's published aggregates; see ``MODEL_CARD.md`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ImmunoprofileError

#: Features of the default model, built by :func:`tfr_features` from profile columns.
IMMUNE_FEATURES = ["log_nk_per_ul", "log_cd4_per_ul", "log_cd8_per_ul", "log_cd4_cd8_ratio"]
#: Optional clinical features: 1 for regimen B (10 mg + escalation + prednisone); years.
CLINICAL_FEATURES = ["regimen_b", "age"]
#: Source column and transform of every feature a model may use.
FEATURE_SOURCES = {
    "log_nk_per_ul": ("nk_per_ul", "log"),
    "log_cd4_per_ul": ("cd4_per_ul", "log"),
    "log_cd8_per_ul": ("cd8_per_ul", "log"),
    "log_cd4_cd8_ratio": ("cd4_cd8_ratio", "log"),
    "regimen_b": ("regimen", "is_b"),
    "age": ("age", "identity"),
}
#: Values are floored before the log, so an empty gate (0 cells/µL) gives a finite
#: feature: counts at 1 cell/µL, the CD4/CD8 ratio at 0.01.
LOG_FLOORS = {"nk_per_ul": 1.0, "cd4_per_ul": 1.0, "cd8_per_ul": 1.0, "cd4_cd8_ratio": 0.01}
#: Bootstrap refits stored with a model for its prediction intervals.
BOOTSTRAP_REFITS = 200
#: Default probability at or above which a patient is in the "high" risk class.
DEFAULT_THRESHOLD = 0.5
MODEL_FORMAT = "immunoprofile-tfr-model"
MODEL_FORMAT_VERSION = 1
DEFAULT_MODEL = "tfr_default.json"
#: What a user of the shipped model is told (``immunoprofile predict`` prints it).
DEFAULT_MODEL_NOTE = ("the default model was trained on SIMULATED data (18 simulated "
                      "patients; see MODEL_CARD.md) and is not better than chance "
                      "(cross-validated AUC 0.65, 95 % CI 0.31-0.95): research use only, "
                      "not anyone's risk — train your own with immunoprofile train")
#: Below these sizes a cross-validated AUC and its bootstrap interval mean nothing (with
#: 6 patients every fold is one or two patients, and "AUC 1.00 (1.00-1.00)" happens):
#: ``immunoprofile train`` says so beside its figures.
MIN_PATIENTS_TO_EVALUATE = 30
MIN_SMALLER_CLASS_TO_EVALUATE = 10
#: How clinical features are named in a model's description and summary.
_CLINICAL_LABELS = {"regimen_b": "regimen (A/B)", "age": "age (years)"}


class ModelError(ImmunoprofileError):
    """A model file is malformed, altered, or does not fit the data it is asked about."""


# --- features ------------------------------------------------------------------------------

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


# --- the estimator -------------------------------------------------------------------------

class TFRClassifier(ClassifierMixin, BaseEstimator):
    """Standardised, L2-regularised logistic regression for P(TFR grade ≥ 2).

    Parameters
    ----------
    C : float, default 1.0
        Inverse regularisation strength (scikit-learn's convention), on standardised
        features. Small cohorts want strong regularisation.
    class_weight : {None, "balanced"}, default None
        As in :class:`sklearn.linear_model.LogisticRegression`. None keeps probabilities
        calibrated to the training prevalence.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation learnt in ``fit`` (scale 1 for a constant feature).
    coef_ : ndarray of shape (1, n_features)
        Log-odds per standard deviation of each feature.
    intercept_ : ndarray of shape (1,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = None):
        self.C = C
        self.class_weight = class_weight

    def fit(self, X, y) -> TFRClassifier:
        """Fit on features ``X`` (n_patients × n_features) and binary outcomes ``y``."""
        from sklearn.linear_model import LogisticRegression

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if self.classes_.size > 2:
            raise ValueError("Only binary classification is supported: TFR grade >= 2 or "
                             f"not (got {self.classes_.size} classes)")
        if self.classes_.size < 2:
            raise ValueError("TFRClassifier needs both outcomes; got 1 class")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000)
        model.fit((X - self.mean_) / self.scale_, y_index)
        self.coef_ = model.coef_.copy()
        self.intercept_ = model.intercept_.copy()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the second class (TFR grade ≥ 2) for each row of ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return ((X - self.mean_) / self.scale_) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of both classes, shape (n, 2); column 1 is P(TFR grade ≥ 2)."""
        from scipy.special import expit

        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The more probable class of each row."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


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

    def predict_interval(self, table: pd.DataFrame, level: float = 0.95) -> np.ndarray:
        """Bootstrap interval of P(TFR grade ≥ 2) per row, shape (n, 2); NaN if unknown.

        Each of the model's bootstrap refits (the training patients resampled with
        replacement, :data:`BOOTSTRAP_REFITS` times) gives a probability; the interval is
        their central ``level`` range. It shows how much the estimate depends on which
        patients were in the training set — not a calibrated confidence interval.
        """
        return self._interval(tfr_features(table, self.features), level)

    def _interval(self, features: pd.DataFrame, level: float = 0.95) -> np.ndarray:
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
    X, y, dropped = _complete_rows(cohort, features)
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


def features_label(features: Sequence[str]) -> str:
    """How a model's clinical features are named ("" for a model of the immune profile
    alone), e.g. ``"uses regimen (A/B) and age (years) besides the immune profile"``."""
    extra = [_CLINICAL_LABELS.get(f, f) for f in features if f not in IMMUNE_FEATURES]
    if not extra:
        return ""
    return f"uses {' and '.join(extra)} besides the immune profile"


def too_few_to_evaluate(patients: int, grade_2_or_more: int) -> str:
    """Why a cohort is too small for cross-validated figures to mean anything ("" when it
    is not): fewer than :data:`MIN_PATIENTS_TO_EVALUATE` patients, or fewer than
    :data:`MIN_SMALLER_CLASS_TO_EVALUATE` in the smaller outcome class.

    Parameters
    ----------
    patients : int
        Patients used (complete rows).
    grade_2_or_more : int
        Of them, patients with TFR grade ≥ 2.
    """
    smaller = min(grade_2_or_more, patients - grade_2_or_more)
    if patients >= MIN_PATIENTS_TO_EVALUATE and smaller >= MIN_SMALLER_CLASS_TO_EVALUATE:
        return ""
    return (f"{patients} patients, {smaller} in the smaller outcome class: too few for "
            "cross-validated figures to mean anything (they need at least "
            f"{MIN_PATIENTS_TO_EVALUATE} patients and {MIN_SMALLER_CLASS_TO_EVALUATE} in "
            "each class) — read the AUC and Brier score below as noise")


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


def _complete_rows(cohort: pd.DataFrame, features: Sequence[str]):
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
    interval = model._interval(X)
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

def model_to_dict(model: TFRModel) -> dict:
    """The model as plain JSON-ready data, with a checksum over all of it."""
    clf = model.classifier
    check_is_fitted(clf)
    body = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "package_version": model.package_version,
        "estimator": "TFRClassifier (standardised L2 logistic regression)",
        "params": {"C": float(clf.C), "class_weight": clf.class_weight},
        "outcome": "tfr_grade >= 2",
        "features": list(model.features),
        "feature_sources": {f: list(FEATURE_SOURCES[f]) for f in model.features},
        "log_floors": {FEATURE_SOURCES[f][0]: LOG_FLOORS[FEATURE_SOURCES[f][0]]
                       for f in model.features if FEATURE_SOURCES[f][1] == "log"},
        "classes": [float(c) for c in clf.classes_],
        "scaler": {"mean": [float(v) for v in clf.mean_],
                   "scale": [float(v) for v in clf.scale_]},
        "coef": [float(v) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
        "threshold": float(model.threshold),
        "training_ranges": {f: [float(a), float(b)]
                            for f, (a, b) in model.training_ranges.items()},
        "training": model.training,
        "bootstrap": [] if model.bootstrap is None else
        [[float(v) for v in row] for row in model.bootstrap],
    }
    return {**body, "checksum": _checksum(body)}


def _checksum(body: dict) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_model(model: TFRModel, path: str | Path) -> None:
    """Write a model as JSON, atomically (see :mod:`immunoprofile.io.atomic`)."""
    from ..io.atomic import atomic_write_text

    text = json.dumps(model_to_dict(model), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def load_model(path: str | Path | None = None) -> TFRModel:
    """Read a model JSON written by :func:`save_model`; None = the shipped default model.

    Raises
    ------
    ModelError
        Unreadable, not JSON, another format, missing or mistyped fields, non-finite
        numbers, or a checksum that does not match (the file was altered).
    """
    if path is None:
        name = f"predict/models/{DEFAULT_MODEL}"
        text = resources.files("immunoprofile").joinpath(name).read_text(encoding="utf-8")
        where = f"default model ({DEFAULT_MODEL})"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"{where}: no such model file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"{where}: cannot read ({exc})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ModelError(f"{where}: not a model file (invalid JSON: {exc})") from None
    except RecursionError:
        raise ModelError(f"{where}: not a model file (nested too deeply)") from None
    return model_from_dict(data, where)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in a model file")


def model_from_dict(data: dict, where: str = "model") -> TFRModel:
    """Rebuild a :class:`TFRModel` from :func:`model_to_dict` output, checking everything."""
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not an immunoprofile TFR model file")
    if data.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(f"{where}: model format version {data.get('format_version')!r} is "
                         f"not supported (this immunoprofile reads {MODEL_FORMAT_VERSION})")
    body = {k: v for k, v in data.items() if k != "checksum"}
    try:
        expected = _checksum(body)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: holds values a model file cannot hold") from None
    if data.get("checksum") != expected:
        raise ModelError(f"{where}: checksum mismatch — the file was altered after it was "
                         "saved; retrain with immunoprofile train")
    try:
        features = _str_list(data["features"], "features")
        for f in features:
            if f not in FEATURE_SOURCES:
                raise ModelError(f"unknown feature {f!r}")
        if len(set(features)) != len(features):
            raise ModelError("a feature is listed twice")
        n = len(features)
        floors = {FEATURE_SOURCES[f][0]: LOG_FLOORS[FEATURE_SOURCES[f][0]]
                  for f in features if FEATURE_SOURCES[f][1] == "log"}
        if data["log_floors"] != floors:
            raise ModelError(f"made with log floors {data['log_floors']}, this version uses "
                             f"{floors}; retrain with immunoprofile train")
        mean = _float_list(data["scaler"]["mean"], n, "scaler.mean")
        scale = _float_list(data["scaler"]["scale"], n, "scaler.scale")
        coef = _float_list(data["coef"], n, "coef")
        intercept = _float(data["intercept"], "intercept")
        classes = _float_list(data["classes"], 2, "classes")
        threshold = _float(data["threshold"], "threshold")
        if not 0 < threshold < 1:
            raise ModelError(f"threshold {threshold} is not in (0, 1)")
        # Standardised features: scales far from the data's, or coefficients beyond what a
        # regularised fit gives, mean a damaged file.
        if not all(1e-8 < v < 1e8 for v in scale) or not all(abs(v) < 1e6 for v in mean):
            raise ModelError("scaler out of range")
        if not all(abs(v) < 1e3 for v in [*coef, intercept]):
            raise ModelError("coefficients out of range")
        if classes != [0.0, 1.0]:
            raise ModelError("classes must be [0, 1] (TFR grade < 2, >= 2)")
        ranges = {f: tuple(_float_list(data["training_ranges"][f], 2, f"range of {f}"))
                  for f in features}
        if any(lo > hi for lo, hi in ranges.values()):
            raise ModelError("a training range has its minimum above its maximum")
        boot = data.get("bootstrap", [])
        if not isinstance(boot, list):
            raise ModelError("bootstrap must be a list")
        boot_rows = [_float_list(row, n + 1, "bootstrap row") for row in boot]
        params = data["params"]
        c_value = _float(params["C"], "C")
        if c_value <= 0 or params["class_weight"] not in (None, "balanced"):
            raise ModelError("params C must be > 0 and class_weight null or 'balanced'")
        clf = TFRClassifier(C=c_value, class_weight=params["class_weight"])
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{where}: malformed model file ({type(exc).__name__}: {exc})") \
            from None
    clf.classes_ = np.asarray(classes)
    clf.mean_ = np.asarray(mean)
    clf.scale_ = np.asarray(scale)
    clf.coef_ = np.asarray([coef])
    clf.intercept_ = np.asarray([intercept])
    clf.n_features_in_ = n
    training = data.get("training", {})
    return TFRModel(clf, features, ranges, threshold,
                    training if isinstance(training, dict) else {},
                    str(data.get("package_version", "")),
                    np.asarray(boot_rows, float).reshape(len(boot_rows), n + 1))


def _float(v, name: str) -> float:
    try:
        ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        raise ModelError(f"{name} is not a finite number")
    return float(v)


def _float_list(v, n: int, name: str) -> list[float]:
    if not isinstance(v, list) or len(v) != n:
        raise ModelError(f"{name} must be a list of {n} numbers")
    return [_float(x, name) for x in v]


def _str_list(v, name: str) -> list[str]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise ModelError(f"{name} must be a non-empty list of names")
    return list(v)


# --- evaluation ------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Cross-validated performance of the model and of simple baselines.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per model: ``model``, ``features``, ``auc``, ``auc_ci_low``,
        ``auc_ci_high`` (bootstrap 95 %), ``brier``, ``patients``, ``grade_2_or_more``.
    calibration : pandas.DataFrame
        Per model and probability bin: ``bin``, ``patients``, ``mean_predicted``,
        ``observed_rate``.
    settings : dict
        Folds, repeats, bootstrap resamples, seed.
    """

    summary: pd.DataFrame
    calibration: pd.DataFrame
    settings: dict


#: The baselines every evaluation reports next to the immune-profile model.
BASELINES = {
    "prevalence only": [],
    "regimen only": ["regimen_b"],
    "CD4/CD8 ratio only": ["log_cd4_cd8_ratio"],
}
CALIBRATION_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def evaluate(cohort: pd.DataFrame, features: Sequence[str] = IMMUNE_FEATURES,
             C: float = 1.0, folds: int = 3, repeats: int = 50, bootstrap: int = 2000,
             seed: int = 0) -> Evaluation:
    """Repeated stratified cross-validation of the model and of simple baselines.

    Every model sees the same patients (those with all features of every model) and the
    same splits. Each patient's out-of-fold probabilities are averaged over the repeats;
    the ROC AUC and Brier score are computed on those averages, and the AUC's 95 % CI by
    resampling patients (percentile bootstrap).

    Parameters
    ----------
    cohort : pandas.DataFrame
        With ``tfr_grade``, immune columns and (for the regimen baseline) ``regimen``.
    features : sequence of str
        The model's features.
    C : float
        Regularisation of the model and the one-feature baselines.
    folds, repeats : int
        Stratified k-fold, repeated; folds is lowered to the minority class size.
    bootstrap : int
        Bootstrap resamples for the AUC interval.
    seed : int
        Seed of the splits and the bootstrap: results are reproducible.

    Returns
    -------
    Evaluation
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    models = {"immune profile": list(features)}
    for name, feats in BASELINES.items():
        if all(FEATURE_SOURCES[f][0] in cohort.columns for f in feats):
            models[name] = feats
    union = list(dict.fromkeys(f for feats in models.values() for f in feats))
    X_all, y, _ = _complete_rows(cohort, union)
    y_arr = y.to_numpy()
    minority = int(min(y_arr.sum(), (1 - y_arr).sum()))
    if minority < 2:
        raise ModelError("evaluation needs at least 2 patients in each outcome class")
    k = max(2, min(folds, minority))
    splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    splits = list(splitter.split(X_all, y_arr))
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, len(y_arr), (bootstrap, len(y_arr)))
    rows, calib = [], []
    for name, feats in models.items():
        oof = np.zeros(len(y_arr))
        for train_idx, test_idx in splits:
            if feats:
                clf = TFRClassifier(C=C).fit(X_all[feats].to_numpy()[train_idx],
                                             y_arr[train_idx])
                oof[test_idx] += clf.predict_proba(X_all[feats].to_numpy()[test_idx])[:, 1]
            else:
                oof[test_idx] += y_arr[train_idx].mean()
        oof /= repeats
        auc = roc_auc_score(y_arr, oof)
        aucs = _bootstrap_auc(y_arr, oof, boot)
        lo, hi = np.percentile(aucs, [2.5, 97.5]) if aucs.size else (np.nan, np.nan)
        rows.append({"model": name, "features": ", ".join(feats) or "(none)",
                     "auc": auc, "auc_ci_low": lo, "auc_ci_high": hi,
                     "brier": brier_score_loss(y_arr, oof), "patients": len(y_arr),
                     "grade_2_or_more": int(y_arr.sum())})
        bins = np.digitize(oof, CALIBRATION_BINS[1:-1])
        for b in range(len(CALIBRATION_BINS) - 1):
            sel = bins == b
            calib.append({"model": name,
                          "bin": f"{CALIBRATION_BINS[b]:.1f}-{CALIBRATION_BINS[b + 1]:.1f}",
                          "patients": int(sel.sum()),
                          "mean_predicted": float(oof[sel].mean()) if sel.any() else np.nan,
                          "observed_rate": float(y_arr[sel].mean()) if sel.any() else np.nan})
    settings = {"folds": k, "repeats": repeats, "bootstrap": bootstrap, "seed": seed, "C": C}
    return Evaluation(pd.DataFrame(rows), pd.DataFrame(calib), settings)


def _bootstrap_auc(y: np.ndarray, score: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """ROC AUC of every bootstrap resample (rows of patient indices) at once.

    The AUC is the Mann–Whitney U of the positives' scores over n₁·n₀, from mid-ranks
    (scipy's ``rankdata``), so ties count one half as in ``roc_auc_score``. Resamples with
    one class only are dropped.
    """
    from scipy.stats import rankdata

    ys, ss = y[resamples], score[resamples]
    n1 = ys.sum(axis=1)
    n0 = ys.shape[1] - n1
    keep = (n1 > 0) & (n0 > 0)
    ranks = rankdata(ss[keep], axis=1)
    u = (ranks * ys[keep]).sum(axis=1) - n1[keep] * (n1[keep] + 1) / 2
    return u / (n1[keep] * n0[keep])


def evaluation_markdown(evaluation: Evaluation, model: str = "immune profile") -> str:
    """The evaluation as two Markdown tables: discrimination and Brier score per model, and
    the calibration of ``model`` (as quoted in ``MODEL_CARD.md``)."""
    lines = ["| model | ROC AUC (bootstrap 95% CI) | Brier score |", "|---|---|---|"]
    for row in evaluation.summary.itertuples():
        lines.append(f"| {row.model} | {row.auc:.2f} ({row.auc_ci_low:.2f}-"
                     f"{row.auc_ci_high:.2f}) | {row.brier:.3f} |")
    lines += ["", f"Calibration of the {model} model (out-of-fold probabilities):", "",
              "| predicted P | patients | mean predicted | observed rate |",
              "|---|---|---|---|"]
    table = evaluation.calibration[evaluation.calibration.model == model]
    for row in table.itertuples():
        empty = row.patients == 0
        lines.append(f"| {row.bin} | {row.patients} | "
                     f"{'-' if empty else f'{row.mean_predicted:.2f}'} | "
                     f"{'-' if empty else f'{row.observed_rate:.2f}'} |")
    return "\n".join(lines)
