"""Simulated tubes: FCS 3.1 as a FACSCanto writes it, and truth that matches the events."""

from __future__ import annotations

import hashlib
import json

import flowkit as fk
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from immunoprofile.simulate import (
    CHANNELS,
    LABEL_CODE,
    PatientSpec,
    cohort_specs,
    random_instrument,
    read_truth,
    simulate_tube,
    write_cohort,
    write_tube,
)

PATIENT = PatientSpec("S1", b_cells_per_ul=20_000, cd4_per_ul=700, cd8_per_ul=400,
                      nk_per_ul=300)


def test_fcs_file_as_facscanto_writes_it(tmp_path):
    sim = simulate_tube(PATIENT, "nk", events=5_000, seed=1)
    path = write_tube(sim, tmp_path / "nk.fcs")
    assert path.read_bytes()[:6] == b"FCS3.1"
    sample = fk.Sample(str(path))
    assert sample.pnn_labels == list(CHANNELS)
    assert sample.pns_labels[3:6] == ["CD3 FITC", "CD16+56 PE", "CD45 PerCP-Cy5.5"]
    spill = sample.metadata["spillover"].split(",")
    assert spill[:4] == ["3", "FITC-A", "PE-A", "PerCP-Cy5-5-A"]
    matrix = np.array(spill[4:], dtype=float).reshape(3, 3)
    assert 0.15 <= matrix[0, 1] <= 0.25 and 0.05 <= matrix[1, 2] <= 0.2
    # Time is scaled by $TIMESTEP on reading; every other channel is as written.
    np.testing.assert_allclose(sample.get_events(source="raw")[:, :-1], sim.events[:, :-1],
                               rtol=1e-6)


def test_truth_matches_events(tmp_path):
    sim = simulate_tube(PATIENT, "cd8", events=20_000, seed=2)
    path = write_tube(sim, tmp_path / "cd8.fcs")
    truth, labels = read_truth(path)
    assert truth["simulated"] is True
    assert labels.size == truth["events"] == 20_000
    for name, count in truth["label_counts"].items():
        assert (labels == LABEL_CODE[name]).sum() == count
    # Lymphocytes are mostly CLL B cells; expected events follow the concentrations.
    ratio = truth["expected_events"]["b_cell"] / truth["expected_events"]["cd8_t"]
    assert ratio == pytest.approx(20_000 / 400)


def test_same_seed_same_tube():
    a = simulate_tube(PATIENT, "cd4", events=3_000, seed=9)
    b = simulate_tube(PATIENT, "cd4", events=3_000, seed=9)
    np.testing.assert_array_equal(a.events, b.events)


def test_random_instrument_in_ranges():
    for seed in range(20):
        inst = random_instrument(seed)
        assert all(abs(g) <= 0.15 for g in inst.gain_offsets)
        assert 0.15 <= inst.spillover[0][1] <= 0.25
        assert 0.05 <= inst.spillover[1][2] <= 0.20


def test_cohort_spans_lymphocytosis():
    alcs = [p.alc for p in cohort_specs()]
    assert min(alcs) < 3 and max(alcs) > 250


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "README.md"}


def test_sample_data_is_small_simulated_and_reproducible(tmp_path):
    sample_data = REPO / "sample_data"
    manifest = pd.read_csv(sample_data / "manifest.csv")
    assert len(manifest) == 18 and set(manifest["tube"]) == {"nk", "cd4", "cd8"}
    size = sum(p.stat().st_size for p in sample_data.iterdir())
    assert size < 15 * 1024 * 1024
    for file in manifest["file"]:
        truth = json.loads((sample_data / file).with_suffix(".truth.json").read_text())
        assert truth["simulated"] is True
    # The README's command regenerates the folder byte for byte.
    write_cohort(tmp_path)
    assert _digest(tmp_path) == _digest(sample_data)
