"""A model is data: JSON written by :func:`save_model` (coefficients, scaler, feature list,
training ranges, a checksum of the training data, the package version, and a checksum of
all of it) and read back by :func:`load_model`, which refuses a malformed file, and one
altered after it was saved unless whoever altered it also recomputed the checksum — the
checksum guards against corruption and hand edits, it is not a signature. Every field is
range-checked as well. Never pickle. The shipped default model is ``models/``."""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..errors import ModelError
from .estimator import TFRClassifier
from .features import FEATURE_SOURCES, LOG_FLOORS
from .model import TFRModel

MODEL_FORMAT = "immunoprofile-tfr-model"


MODEL_FORMAT_VERSION = 1


DEFAULT_MODEL = "tfr_default.json"


#: What a user of the shipped model is told (``immunoprofile predict`` prints it).
DEFAULT_MODEL_NOTE = ("the default model was trained on SIMULATED data (18 simulated "
                      "patients; see MODEL_CARD.md) and is not better than chance "
                      "(cross-validated AUC 0.65, 95 % CI 0.31-0.95): research use only, "
                      "not anyone's risk — train your own with immunoprofile train")


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
