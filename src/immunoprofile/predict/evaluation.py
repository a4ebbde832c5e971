"""How well a model would do: cross-validated AUC with a bootstrap interval, calibration and
the baselines it must beat, on a cohort large enough to say (:func:`evaluate`), and the
Markdown of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelError
from .estimator import TFRClassifier
from .features import FEATURE_SOURCES, IMMUNE_FEATURES, complete_rows

#: Below these sizes a cross-validated AUC and its bootstrap interval mean nothing (with
#: 6 patients every fold is one or two patients, and "AUC 1.00 (1.00-1.00)" happens):
#: ``immunoprofile train`` says so beside its figures.
MIN_PATIENTS_TO_EVALUATE = 30


MIN_SMALLER_CLASS_TO_EVALUATE = 10


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
    X_all, y, _ = complete_rows(cohort, union)
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
