"""Gating and counting against the simulated truth, across lymphocytosis and instruments.

Every population's gate must recover its true events with F1 ≥ 0.95, and every absolute
count must lie within 3 Poisson standard deviations (or 5 %, whichever is larger) of the
true concentration — for ALC from 1 to 300 ×10⁹/L, and for tubes from other cytometers
(every fluorescence gain shifted by up to ±0.15 decade, spillover anywhere in its range).
Both gating modes are held to it: adaptive (every case) and fixed (the fast cases; the
wider envelope of adaptive gating is tested in ``test_adaptive_envelope.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.batch import write_manifest, write_patient

from immunoprofile import gate_batch
from immunoprofile.datasets.evaluation import gate_membership
from immunoprofile.datasets.simulate import (
    GATE_TRUTH,
    LABEL_CODE,
    Instrument,
    PatientSpec,
    random_instrument,
)
from immunoprofile.datasets.tube_files import read_truth

# Patients from mild to extreme lymphocytosis; T and NK counts inside the study's ranges.
PATIENTS = {
    1: PatientSpec("ALC001", b_cells_per_ul=100, cd4_per_ul=500, cd8_per_ul=250, nk_per_ul=120),
    10: PatientSpec("ALC010", b_cells_per_ul=8_400, cd4_per_ul=800, cd8_per_ul=500,
                    nk_per_ul=270),
    50: PatientSpec("ALC050", b_cells_per_ul=48_300, cd4_per_ul=700, cd8_per_ul=600,
                    nk_per_ul=370),
    150: PatientSpec("ALC150", b_cells_per_ul=147_000, cd4_per_ul=1_500, cd8_per_ul=900,
                     nk_per_ul=570),
    300: PatientSpec("ALC300", b_cells_per_ul=296_000, cd4_per_ul=2_000, cd8_per_ul=1_400,
                     nk_per_ul=570),
}
INSTRUMENTS = {
    "nominal": Instrument(),
    # The corners of the allowed range: all gains up with the most spillover, all down
    # with the least, and gains pulling in opposite directions.
    "gains_up": Instrument("gains_up", (0.15, 0.15, 0.15), 0.05,
                           ((1.0, 0.25, 0.04), (0.02, 1.0, 0.20), (0.0, 0.01, 1.0))),
    "gains_down": Instrument("gains_down", (-0.15, -0.15, -0.15), -0.05,
                             ((1.0, 0.15, 0.01), (0.0, 1.0, 0.05), (0.0, 0.0, 1.0))),
    "gains_mixed": Instrument("gains_mixed", (0.15, -0.15, 0.15), 0.0,
                              ((1.0, 0.25, 0.01), (0.0, 1.0, 0.20), (0.0, 0.0, 1.0))),
    "random": random_instrument(20261125),
}
FAST = {(1, "nominal"), (300, "nominal"), (50, "gains_mixed")}
CASES = [
    pytest.param(alc, name, gating, id=f"alc{alc}-{name}-{gating}",
                 marks=() if (alc, name) in FAST else pytest.mark.slow)
    for gating in ("adaptive", "fixed") for alc in PATIENTS for name in INSTRUMENTS
    if gating == "adaptive" or (alc, name) in FAST
]


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _tolerance(truth_value: float, expected_events: float, expected_beads: float) -> float:
    sigma = truth_value * math.sqrt(1 / expected_events + 1 / expected_beads)
    return max(3 * sigma, 0.05 * truth_value)


@pytest.mark.parametrize("alc, instrument_name, gating", CASES)
def test_gates_and_counts_match_truth(tmp_path, alc, instrument_name, gating):
    patient = PATIENTS[alc]
    rows = write_patient(tmp_path, patient, events=100_000, seed=alc,
                         instrument=INSTRUMENTS[instrument_name])
    write_manifest(tmp_path, rows)
    result = gate_batch(tmp_path, gating=gating)
    assert result.ok, result.errors
    assert not any("GATE_UNCERTAIN" in f for f in result.samples["qc_flags"].fillna(""))
    pops = result.populations.set_index(["tube", "population"])

    for tube in ("nk", "cd4", "cd8"):
        path = tmp_path / f"{patient.patient_id}_{tube}.fcs"
        truth, labels = read_truth(path)
        membership = gate_membership(path, gating).membership
        expected = truth["expected_events"]
        for gate_id, member in membership.items():
            if gate_id not in GATE_TRUTH:
                continue
            codes = [LABEL_CODE[name] for name in GATE_TRUTH[gate_id]]
            is_true = np.isin(labels, codes)
            f1 = _f1(member, is_true)
            assert f1 >= 0.95, f"{tube} {gate_id}: F1 {f1:.4f}"
            if gate_id == "Beads":
                continue
            true_per_ul = sum(truth["cells_per_ul"][name] for name in GATE_TRUTH[gate_id])
            exp_events = sum(expected[name] for name in GATE_TRUTH[gate_id])
            measured = pops.loc[(tube, gate_id), "cells_per_ul"]
            tol = _tolerance(true_per_ul, exp_events, expected["bead"])
            assert abs(measured - true_per_ul) <= tol, (
                f"{tube} {gate_id}: {measured:.1f} vs true {true_per_ul:.1f} cells/µL "
                f"(tolerance {tol:.1f})")
            # Dual platform: % of lymphocytes × ALC; only the population's sampling error.
            dual = pops.loc[(tube, gate_id), "cells_per_ul_dual"]
            tol_dual = max(3 * true_per_ul / math.sqrt(exp_events), 0.05 * true_per_ul)
            assert abs(dual - true_per_ul) <= tol_dual, (tube, gate_id, dual, true_per_ul)

    profile = result.profiles.iloc[0]
    true_ratio = patient.cd4_per_ul / patient.cd8_per_ul
    cd4_truth, _ = read_truth(tmp_path / f"{patient.patient_id}_cd4.fcs")
    cd8_truth, _ = read_truth(tmp_path / f"{patient.patient_id}_cd8.fcs")
    rel_sigma = math.sqrt(1 / cd4_truth["expected_events"]["cd4_t"]
                          + 1 / cd8_truth["expected_events"]["cd8_t"]
                          + 1 / cd4_truth["expected_events"]["bead"]
                          + 1 / cd8_truth["expected_events"]["bead"])
    tol = max(3 * rel_sigma, 0.05) * true_ratio
    assert abs(profile["cd4_cd8_ratio"] - true_ratio) <= tol
    assert profile["nk_per_ul"] == pytest.approx(
        pops.loc[("nk", "NK"), "cells_per_ul"])
