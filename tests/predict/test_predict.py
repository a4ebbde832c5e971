"""The TFR classifier: scikit-learn conformance, JSON models that refuse tampering, the
shipped default model and its card, and predict/train end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import check_estimator

from immunoprofile.errors import ModelError
from immunoprofile.predict import model_file
from immunoprofile.predict.estimator import TFRClassifier
from immunoprofile.predict.evaluation import (
    BASELINES,
    evaluate,
    evaluation_markdown,
    too_few_to_evaluate,
)
from immunoprofile.predict.features import (
    IMMUNE_FEATURES,
    complete_rows,
    table_checksum,
    tfr_features,
)
from immunoprofile.predict.model import PREDICTION_COLUMNS, predict_patients, train
from immunoprofile.predict.model_file import load_model, model_to_dict, save_model
from immunoprofile.study.reference_cohort import SIMULATED_NOTE, reference_cohort

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "src/immunoprofile/predict/models/MODEL_CARD.md"


@pytest.fixture(scope="module")
def cohort():
    return reference_cohort()


@pytest.fixture(scope="module")
def model(cohort):
    return train(cohort, description=SIMULATED_NOTE)


def test_check_estimator():
    check_estimator(TFRClassifier())


def test_classifier_is_standardised_logistic_regression(cohort):
    X, y, _ = complete_rows(cohort, IMMUNE_FEATURES)
    clf = TFRClassifier(C=0.5).fit(X, y)
    Z = (X - X.mean()) / X.std(ddof=0)
    ref = LogisticRegression(C=0.5, max_iter=1000).fit(Z, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(Z),
                               rtol=1e-6)
    assert list(clf.feature_names_in_) == IMMUNE_FEATURES


def test_features_floor_and_missing():
    table = pd.DataFrame({"nk_per_ul": [0.0, 200.0, np.nan], "cd4_per_ul": [500.0] * 3,
                          "cd8_per_ul": [250.0] * 3, "cd4_cd8_ratio": [0.001, 2.0, 2.0]})
    X = tfr_features(table)
    assert X.log_nk_per_ul[0] == 0.0  # 0 cells/uL floored at 1
    assert X.log_cd4_cd8_ratio[0] == pytest.approx(np.log(0.01))
    assert X.log_cd4_cd8_ratio[1] == pytest.approx(np.log(2.0))
    assert np.isnan(X.log_nk_per_ul[2])
    with pytest.raises(ModelError, match="needs column regimen.*--cohort"):
        tfr_features(table, ["regimen_b"])


def test_json_round_trip_gives_identical_predictions(model, cohort, tmp_path):
    path = tmp_path / "model.json"
    save_model(model, path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(cohort), model.predict_proba(cohort))
    assert loaded.features == model.features
    assert loaded.training_ranges == model.training_ranges
    assert loaded.training == model.training
    data = json.loads(path.read_text())
    for key in ("coef", "scaler", "features", "training_ranges", "package_version",
                "checksum"):
        assert key in data
    assert data["training"]["sha256"] == table_checksum(cohort)
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["coef"].__setitem__(0, d["coef"][0] + 0.01), "checksum mismatch"),
    (lambda d: d.__setitem__("threshold", 0.1), "checksum mismatch"),
    (lambda d: d["training"].__setitem__("patients", 1000), "checksum mismatch"),
    (lambda d: d.__setitem__("format", "something-else"), "not an immunoprofile TFR model"),
    (lambda d: d.__setitem__("format_version", 99), "format version 99"),
])
def test_tampered_model_is_refused(model, tmp_path, edit, message):
    path = tmp_path / "model.json"
    save_model(model, path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_resealed_but_malformed_model_is_refused(model, tmp_path):
    """Even with a valid checksum, wrong shapes and types are refused."""
    path = tmp_path / "model.json"
    for edit, message in ((lambda d: d.__setitem__("coef", [1.0]), "coef must be a list"),
                          (lambda d: d.__setitem__("features", ["shoe_size"]),
                           "unknown feature"),
                          (lambda d: d.pop("scaler"), "malformed"),
                          (lambda d: d["scaler"].__setitem__("scale", [0.0] * 4),
                           "out of range")):
        data = model_to_dict(model)
        edit(data)
        body = {k: v for k, v in data.items() if k != "checksum"}
        data["checksum"] = model_file._checksum(body)
        path.write_text(json.dumps(data))
        with pytest.raises(ModelError, match=message):
            load_model(path)


def test_unreadable_model_files(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "immunoprofile-tfr-model", "coef": [NaN]}')
    with pytest.raises(ModelError, match="invalid JSON"):
        load_model(bad)
    bad.write_text("not json at all")
    with pytest.raises(ModelError, match="invalid JSON"):
        load_model(bad)


def test_shipped_default_model_is_what_training_produces(cohort):
    """The shipped JSON is exactly the reference-cohort fit (not hand-edited)."""
    shipped = model_to_dict(load_model())
    fresh = model_to_dict(train(cohort, description=SIMULATED_NOTE))
    for key in ("features", "scaler", "coef", "intercept", "training_ranges", "training",
                "threshold", "params", "log_floors"):
        if key == "scaler":
            # pytest.approx takes no nested mappings (pytest >= 9.2): compare each array
            assert shipped[key].keys() == fresh[key].keys(), key
            for part in shipped[key]:
                assert shipped[key][part] == pytest.approx(fresh[key][part]), (key, part)
        elif key in ("coef", "intercept"):
            assert shipped[key] == pytest.approx(fresh[key]), key
        else:
            assert shipped[key] == fresh[key], key
    np.testing.assert_allclose(shipped["bootstrap"], fresh["bootstrap"], rtol=1e-9)
    assert "SIMULATED" in shipped["training"]["description"]


@pytest.mark.slow
def test_model_card_quotes_evaluate(cohort):
    """MODEL_CARD.md's metric tables are what evaluate() gives (seeded, reproducible)."""
    text = evaluation_markdown(evaluate(cohort))
    card = CARD.read_text()
    assert text in card
    assert "SIMULATED" in card and "Research use only" in card


def test_evaluate_reports_baselines_on_the_same_patients(cohort):
    result = evaluate(cohort, repeats=5, bootstrap=200)
    s = result.summary.set_index("model")
    assert list(s.index) == ["immune profile", *BASELINES]
    assert (s.patients == 18).all() and (s.grade_2_or_more == 6).all()
    assert s.loc["prevalence only", "auc"] == 0.5
    assert ((s.auc_ci_low <= s.auc) & (s.auc <= s.auc_ci_high)).all()
    assert ((s.brier > 0) & (s.brier < 1)).all()
    calib = result.calibration
    assert (calib.groupby("model").patients.sum() == 18).all()
    # Reproducible: the same seed gives the same numbers.
    again = evaluate(cohort, repeats=5, bootstrap=200)
    pd.testing.assert_frame_equal(result.summary, again.summary)


def test_predict_patients_flags(model):
    profiles = pd.DataFrame({
        "patient_id": ["in", "far", "missing"],
        "nk_per_ul": [300.0, 50_000.0, np.nan], "cd4_per_ul": [700.0, 700.0, 700.0],
        "cd8_per_ul": [600.0, 600.0, 600.0], "cd4_cd8_ratio": [700 / 600] * 3})
    out = predict_patients(model, profiles)
    assert list(out.columns) == PREDICTION_COLUMNS
    row = out.set_index("patient_id")
    assert 0 < row.loc["in", "p_tfr_grade_2_or_more"] < 1
    assert row.loc["in", "risk_class"] in ("low", "high")
    assert row.loc["in", "p_low_95"] < row.loc["in", "p_tfr_grade_2_or_more"] < \
        row.loc["in", "p_high_95"]
    assert not row.loc["in", "outside_training_range"]
    assert row.loc["far", "outside_training_range"]
    assert row.loc["far", "outside_features"] == "log_nk_per_ul"
    assert np.isnan(row.loc["missing", "p_tfr_grade_2_or_more"])
    assert row.loc["missing", "note"] == "no prediction: missing nk_per_ul"
    p = row.loc[["in", "far"], "p_tfr_grade_2_or_more"].to_numpy()
    assert ((p >= model.threshold) == (row.loc[["in", "far"], "risk_class"] == "high")).all()


def test_training_needs_both_outcomes(cohort):
    with pytest.raises(ModelError, match="at least 2 patients"):
        train(cohort[cohort.tfr_grade.astype(float) < 2])
    with pytest.raises(ModelError, match="threshold"):
        train(cohort, threshold=1.0)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def gated_sample_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gated")
    result = run_cli("gate", REPO / "sample_data", "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    return out


def test_predict_on_gated_sample_data(gated_sample_data, tmp_path):
    """immunoprofile gate sample_data/ -> immunoprofile predict, with the default model."""
    out = tmp_path / "predictions.csv"
    result = run_cli("predict", gated_sample_data, "-o", out)
    assert result.returncode == 0, result.stderr
    predictions = pd.read_csv(out)
    profiles = pd.read_csv(gated_sample_data / "profiles.csv")
    assert predictions.patient_id.tolist() == profiles.patient_id.tolist()
    assert predictions.p_tfr_grade_2_or_more.between(0, 1).all()
    assert set(predictions.risk_class) <= {"low", "high"}
    expected = load_model().predict_proba(profiles)
    np.testing.assert_allclose(predictions.p_tfr_grade_2_or_more, expected)


def test_train_then_predict_with_regimen(gated_sample_data, tmp_path):
    cohort_csv = tmp_path / "cohort.csv"
    reference_cohort().to_csv(cohort_csv, index=False)
    model_path = tmp_path / "model.json"
    result = run_cli("train", cohort_csv, "-o", model_path, "--with-regimen",
                     "--no-evaluate")
    assert result.returncode == 0, result.stderr
    assert load_model(model_path).features == [*IMMUNE_FEATURES, "regimen_b"]
    # Without the regimen the model cannot predict: a one-line error, exit 1.
    out = tmp_path / "predictions.csv"
    result = run_cli("predict", gated_sample_data, "--model", model_path, "-o", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "regimen" in result.stderr and not out.exists()
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("patient_id,regimen\n" + "".join(
        f"P0{i},{'AB'[i % 2]}\n" for i in range(1, 6)))  # P06 has no row -> no prediction
    result = run_cli("predict", gated_sample_data, "--model", model_path, "--cohort",
                     clinical, "-o", out)
    assert result.returncode == 1
    predictions = pd.read_csv(out)
    assert predictions.p_tfr_grade_2_or_more.notna().sum() == 5
    assert "P06: no prediction: missing regimen" in result.stderr


def test_predict_refuses_tampered_model(gated_sample_data, tmp_path):
    path = tmp_path / "model.json"
    data = model_to_dict(load_model())
    data["intercept"] += 1.0
    path.write_text(json.dumps(data))
    result = run_cli("predict", gated_sample_data, "--model", path, "-o", tmp_path / "p.csv")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {path}: checksum")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.__setitem__("coef", [-5000.0, 1.0, 1.0, 1.0]), "coefficients out of range"),
    (lambda d: d["scaler"].__setitem__("scale", [1e-300] * 4), "scaler out of range"),
    (lambda d: d.__setitem__("classes", [7.0, 7.0]), "classes must be"),
    (lambda d: d["params"].__setitem__("C", -5.0), "C must be > 0"),
    (lambda d: d["params"].__setitem__("class_weight", {"0": 9}), "class_weight"),
    (lambda d: d["training_ranges"].__setitem__("log_nk_per_ul", [9.0, 1.0]),
     "minimum above its maximum"),
    (lambda d: d.__setitem__("intercept", 10 ** 400), "not a finite number"),
])
def test_resealed_out_of_range_fields_are_refused(model, tmp_path, edit, message):
    """A re-sealed file (checksum recomputed) is still checked field by field."""
    data = model_to_dict(model)
    edit(data)
    data["checksum"] = model_file._checksum({k: v for k, v in data.items() if k != "checksum"})
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_deeply_nested_model_file_is_refused(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match="not a model file"):
        load_model(path)


@pytest.mark.parametrize("c_value", ["inf", "nan"])
def test_train_refuses_non_finite_regularisation(tmp_path, c_value):
    cohort_csv = tmp_path / "cohort.csv"
    reference_cohort().to_csv(cohort_csv, index=False)
    result = run_cli("train", cohort_csv, "-o", tmp_path / "m.json", "-C", c_value,
                     "--no-evaluate")
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_predict_with_the_default_model_says_what_it_is(gated_sample_data, tmp_path):
    result = run_cli("predict", gated_sample_data, "-o", tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr
    note = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "SIMULATED" in note[0] and "not better than chance" in note[0]
    own = tmp_path / "own.json"
    save_model(train(reference_cohort(), description="mine"), own)
    result = run_cli("predict", gated_sample_data, "--model", own, "-o", tmp_path / "q.csv")
    assert result.returncode == 0 and "SIMULATED" not in result.stderr


def test_train_on_a_handful_of_patients_warns_and_labels_clinical_features(
        gated_sample_data, tmp_path):
    """Six simulated patients (examples/cohort.csv): the cross-validated figures are noise,
    and train says so; a model with regimen and age says it uses them."""
    model_path = tmp_path / "m.json"
    result = run_cli("train", REPO / "examples" / "cohort.csv", "--profiles",
                     gated_sample_data, "-o", model_path, "--with-regimen", "--with-age")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "6 patients" in warning[0] and "too few" in warning[0]
    assert lines.index(warning[0]) < next(i for i, line in enumerate(lines)
                                          if line.startswith("  ") and "AUC" in line)
    assert "uses regimen (A/B) and age (years) besides the immune profile" in lines[0]
    description = json.loads(model_path.read_text())["training"]["description"]
    assert "uses regimen (A/B) and age (years)" in description
    assert too_few_to_evaluate(45, 12) == "" and too_few_to_evaluate(45, 9) != ""
    assert too_few_to_evaluate(29, 14) != ""
