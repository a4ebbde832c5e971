"""Simulated tubes: FCS 3.1 as a FACSCanto writes it, and truth that matches the events."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import flowkit as fk
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO

from immunoprofile.cli import main
from immunoprofile.datasets.cohort import cohort_specs, stained_volume_ul, write_cohort
from immunoprofile.datasets.envelope import ENVELOPE, envelope_case, envelope_cases
from immunoprofile.datasets.simulate import (
    CHANNEL_RANGE,
    CHANNELS,
    LABEL_CODE,
    Instrument,
    Layout,
    PatientSpec,
    random_instrument,
    simulate_tube,
)
from immunoprofile.datasets.tube_files import read_truth, write_tube

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
    """SHA-256 of each file; of its labels for a ``.labels.npz`` (zlib builds compress the
    same labels to different bytes: the system Python's and pyenv's do)."""
    def content(p):
        if p.name.endswith(".labels.npz"):
            with np.load(p) as data:
                return data["labels"].tobytes()
        return p.read_bytes()

    return {p.name: hashlib.sha256(content(p)).hexdigest()
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


# --- Layouts and the layout envelope (issue 12) -------------------------------------------

# Digests of events + labels of tubes simulated by the code as it was before layouts existed
# (commit 7526072). Computed once from that code, not from this one: they check that the
# default layout leaves every random draw, and so every event, unchanged.
_UNCHANGED_DIGESTS = {
    ("cd4", 3, None): "c0c4962d0ce3a5c5e38e7b4e5141c9c91410c8e310c8f1c05615cf739c2d35de",
    ("nk", 11, 5): "280fac34e730a6515f65696321007d0034d3d240eebb5a19fd184aa641534603",
    ("cd8", 4, 6): "ef361b6c7c855bc198bbe426e10206bf466b98a7be9c516d7740fe923cdf203f",
}


@pytest.mark.parametrize("layout", [None, Layout()], ids=["no-layout", "default-layout"])
def test_default_layout_gives_todays_events(layout):
    for (tube, seed, instrument_seed), digest in _UNCHANGED_DIGESTS.items():
        instrument = None if instrument_seed is None else random_instrument(instrument_seed)
        sim = simulate_tube(PATIENT, tube, events=4_000, seed=seed, instrument=instrument,
                            layout=layout)
        assert hashlib.sha256(sim.events.tobytes() + sim.labels.tobytes()).hexdigest() == digest
        # A layout given is recorded; none keeps today's truth file.
        assert ("layout" in sim.truth) == (layout is not None)


def _compensated(sim):
    """Fluorescence of a simulated tube with its spillover undone (events × 3)."""
    spill = np.asarray(sim.truth["instrument"]["spillover"])
    return sim.events[:, 3:6].astype(float) @ np.linalg.inv(spill)


def _of(sim, label):
    return sim.labels == LABEL_CODE[label]


def test_bead_position_follows_layout_and_gain():
    instrument = Instrument(gain_offsets=(0.3, -0.4, 0.2), scatter_gain_offset=-0.2)
    layout = Layout(bead_fluorescence_log10=(4.2, 4.6, 4.45), bead_scatter=(55_000, 18_000))
    sim = simulate_tube(PATIENT, "cd4", events=6_000, seed=1, instrument=instrument,
                        layout=layout, beads_per_test=200_000)
    beads = _of(sim, "bead")
    assert beads.sum() > 500
    seen = np.median(np.log10(_compensated(sim)[beads]), axis=0)
    np.testing.assert_allclose(seen, np.add(layout.bead_fluorescence_log10,
                                            instrument.gain_offsets), atol=0.02)
    # At lymphocyte-like scatter, × the scatter gain.
    fsc, ssc = np.median(sim.events[beads][:, [0, 2]], axis=0)
    np.testing.assert_allclose([fsc, ssc], np.multiply(layout.bead_scatter, 10 ** -0.2),
                               rtol=0.02)
    assert list(sim.truth["layout"]["bead_scatter"]) == [55_000, 18_000]


def _cd45_log10(sim, label):
    return np.log10(np.clip(_compensated(sim)[_of(sim, label), 2], 1, None))


def test_cll_cd45_offset_moves_the_b_cells_only():
    base = simulate_tube(PATIENT, "cd4", events=6_000, seed=2)
    dim = simulate_tube(PATIENT, "cd4", events=6_000, seed=2,
                        layout=Layout(b_cell_cd45_offset=-0.3))
    shift = np.median(_cd45_log10(dim, "b_cell")) - np.median(_cd45_log10(base, "b_cell"))
    assert shift == pytest.approx(-0.3, abs=0.02)
    # Now 0.5 decade below the T cells, which stay where they were.
    below_t = np.median(_cd45_log10(dim, "cd4_t")) - np.median(_cd45_log10(dim, "b_cell"))
    assert below_t == pytest.approx(0.5, abs=0.03)
    assert np.median(_cd45_log10(dim, "cd4_t")) == pytest.approx(
        np.median(_cd45_log10(base, "cd4_t")), abs=0.02)


def test_monocyte_ssc_ratio():
    patient = PatientSpec("M", b_cells_per_ul=500, cd4_per_ul=800, cd8_per_ul=400,
                          nk_per_ul=200, monocytes_per_ul=1_500)
    sim = simulate_tube(patient, "cd8", events=8_000, seed=3,
                        layout=Layout(monocyte_ssc_ratio=2.0),
                        instrument=Instrument(scatter_gain_offset=0.25))
    ssc = sim.events[:, 2]
    ratio = np.median(ssc[_of(sim, "monocyte")]) / np.median(ssc[_of(sim, "cd8_t")])
    assert ratio == pytest.approx(2.0, rel=0.05)
    default = simulate_tube(patient, "cd8", events=8_000, seed=3)
    assert np.median(default.events[_of(default, "monocyte"), 2]) == pytest.approx(75_000,
                                                                                    rel=0.03)


def test_spread_factors_widen_fluorescence_and_scatter():
    patient = PatientSpec("W", b_cells_per_ul=300, cd4_per_ul=2_000, cd8_per_ul=500,
                          nk_per_ul=200)
    base = simulate_tube(patient, "cd4", events=8_000, seed=4)
    wide = simulate_tube(patient, "cd4", events=8_000, seed=4,
                         layout=Layout(fluorescence_spread=1.5, scatter_spread=0.7))
    pe = {name: np.std(np.log10(_compensated(sim)[_of(sim, "cd4_t"), 1]))
          for name, sim in (("base", base), ("wide", wide))}
    assert pe["wide"] / pe["base"] == pytest.approx(1.5, rel=0.1)
    fsc = {name: np.std(sim.events[_of(sim, "cd4_t"), 0]) for name, sim in (("base", base),
                                                                             ("wide", wide))}
    assert fsc["wide"] / fsc["base"] == pytest.approx(0.7, rel=0.1)


def test_layout_refuses_impossible_values():
    with pytest.raises(ValueError, match="one value per fluorescence channel"):
        Layout(bead_fluorescence_log10=(4.0, 4.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spread"):
        Layout(scatter_spread=0.0)
    with pytest.raises(ValueError, match="monocyte_ssc_ratio"):
        Layout(monocyte_ssc_ratio=-1.0)


def test_envelope_cases_reproducible_and_within_bounds():
    cases = list(envelope_cases(200, seed=11))
    assert cases == list(envelope_cases(200, seed=11))
    assert envelope_case(11, 57) == cases[57]
    assert list(envelope_cases(3, seed=12)) != cases[:3]
    env = ENVELOPE
    gains = np.array([c.instrument.gain_offsets for c in cases])
    assert np.abs(gains).max() <= env.gain_offset and np.abs(gains).max() > 0.45
    scatter_gains = np.array([c.instrument.scatter_gain_offset for c in cases])
    assert np.abs(scatter_gains).max() <= env.scatter_gain_offset
    seen_beads = np.array([c.layout.bead_fluorescence_log10 for c in cases]) + gains
    assert seen_beads.min() >= 4.0 and seen_beads.max() <= 5.3
    assert np.ptp(seen_beads, axis=0).min() > 1.0  # each channel spread across the range
    bead_ssc = np.array([c.layout.bead_scatter[1] for c in cases]) * 10 ** scatter_gains
    lymphocyte_like = (bead_ssc > 0.8 * 18_000 * 10 ** scatter_gains) & (
        bead_ssc < 1.25 * 18_000 * 10 ** scatter_gains)
    assert 30 < lymphocyte_like.sum() < 120
    assert bead_ssc.min() >= 4_000 * 0.99 and bead_ssc.max() <= 200_000 * 1.01
    ratios = [c.layout.monocyte_ssc_ratio for c in cases]
    assert min(ratios) >= 2.0 and min(ratios) < 2.1 and max(ratios) <= 5.0
    offsets = [c.layout.b_cell_cd45_offset for c in cases]
    assert min(offsets) >= -0.3 and min(offsets) < -0.28 and max(offsets) <= 0.2
    spreads = [s for c in cases for s in (c.layout.fluorescence_spread, c.layout.scatter_spread)]
    assert min(spreads) >= 0.7 and max(spreads) <= 1.5
    alc = np.array([c.patient.alc for c in cases])
    assert alc.min() >= 1.0 and alc.max() <= 300.0 and alc.max() > 150 and alc.min() < 1.5
    cll = np.array([c.patient.b_cells_per_ul / c.patient.lymphocytes_per_ul for c in cases])
    assert cll.min() >= 0 and cll.max() <= 0.99 + 1e-9 and (cll > 0.97).sum() >= 10
    low_t = [min(c.patient.cd4_per_ul, c.patient.cd8_per_ul) for c in cases]
    assert min(low_t) >= 20 and sum(t < 50 for t in low_t) >= 20
    nk = [c.patient.nk_per_ul for c in cases]
    assert min(nk) >= 50 and max(nk) <= 1_000
    for c in cases:
        assert c.volume_ul == stained_volume_ul(c.patient, c.beads_per_test)
        assert 40_000 <= c.beads_per_test <= 60_000


def test_envelope_tubes_are_physically_sensible():
    # The most extreme of 200 cases: the brightest beads (most clipping), the highest ALC
    # (least beads), the lowest scatter gain.
    cases = list(envelope_cases(200, seed=0))
    picks = [max(cases, key=lambda c: max(np.add(c.layout.bead_fluorescence_log10,
                                                 c.instrument.gain_offsets))),
             max(cases, key=lambda c: c.patient.alc),
             min(cases, key=lambda c: c.instrument.scatter_gain_offset)]
    for case in picks:
        for tube in ("nk", "cd4", "cd8"):
            sim = case.simulate(tube, events=5_000, seed=1)
            assert sim.events.shape == (5_000, len(CHANNELS))
            assert np.isfinite(sim.events).all()
            assert sim.events[:, :6].max() <= CHANNEL_RANGE - 1
            assert sim.events[:, :3].min() >= 0 and sim.events[:, 3:6].min() >= -111
            beads = _of(sim, "bead")
            assert beads.mean() > 0.03  # the dilution keeps beads at ~5 % of events or more
            clipped = (sim.events[beads][:, 3:6] >= CHANNEL_RANGE - 1).mean()
            assert clipped < 0.05
            assert sim.truth["layout"] == dataclasses.asdict(case.layout)


def test_cli_writes_envelope_cases(tmp_path):
    result = CliRunner().invoke(main, ["simulate", str(tmp_path / "env"), "--envelope", "2",
                                       "--seed", "4", "--events", "2000"])
    assert result.exit_code == 0, result.output
    manifest = pd.read_csv(tmp_path / "env" / "manifest.csv")
    assert len(manifest) == 6 and list(manifest["tube"][:3]) == ["nk", "cd4", "cd8"]
    assert manifest["patient_id"].nunique() == 2
    truth, labels = read_truth(tmp_path / "env" / manifest["file"][1])
    case = envelope_case(4, 0)
    assert truth["envelope_case"] == {"seed": 4, "index": 0} and labels.size == 2_000
    assert truth["layout"]["b_cell_cd45_offset"] == case.layout.b_cell_cd45_offset
    assert truth["volume_ul"] == manifest["volume_ul"][1] == case.volume_ul
    assert truth["beads_per_test"] == manifest["beads_per_test"][1] == case.beads_per_test
    # Options the envelope draws itself are refused, not silently ignored.
    refused = CliRunner().invoke(main, ["simulate", str(tmp_path / "x"), "--envelope", "1",
                                        "--other-cytometer"])
    assert refused.exit_code == 2 and "--other-cytometer" in refused.output
