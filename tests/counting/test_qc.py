"""QC flags fire on tubes built to trip them, and stay silent on clean ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.batch import write_manifest, write_patient

from immunoprofile import gate_batch
from immunoprofile.counting.gate_counts import events_in_both
from immunoprofile.counting.qc import FLAG_DESCRIPTIONS, describe_flag, tube_flags
from immunoprofile.datasets.simulate import PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube

CLEAN = PatientSpec("CLEAN", b_cells_per_ul=2_000, cd4_per_ul=800, cd8_per_ul=500,
                    nk_per_ul=300)


def _flags(tmp_path, patient, **options) -> list[str]:
    rows = write_patient(tmp_path, patient, **options)
    write_manifest(tmp_path, rows)
    result = gate_batch(tmp_path)
    assert result.ok, result.errors
    return [f for f in result.profiles.loc[0, "qc_flags"].split(";") if f]


def test_clean_patient_has_no_flags(tmp_path):
    assert _flags(tmp_path, CLEAN, events=80_000) == []


def test_low_bead_events(tmp_path):
    flags = _flags(tmp_path, CLEAN, events=20_000, beads_per_test=2_000, volume_ul=50)
    assert {"nk:LOW_BEAD_EVENTS", "cd4:LOW_BEAD_EVENTS", "cd8:LOW_BEAD_EVENTS"} <= set(flags)


def test_low_population_events(tmp_path):
    few_nk = dataclasses.replace(CLEAN, nk_per_ul=5)
    flags = _flags(tmp_path, few_nk, events=20_000)
    assert "nk:LOW_POPULATION_EVENTS" in flags
    assert "cd4:LOW_POPULATION_EVENTS" not in flags


def test_low_lymphocyte_events(tmp_path):
    flags = _flags(tmp_path, CLEAN, events=2_000)
    assert "nk:LOW_LYMPHOCYTE_EVENTS" in flags


def test_cd3_and_lymphocyte_tubes_disagree(tmp_path):
    # The CD4 tube was stained from another patient's blood (a mix-up): twice the T cells.
    other = dataclasses.replace(CLEAN, cd4_per_ul=1_600, cd8_per_ul=1_000, b_cells_per_ul=4_000)
    flags = _flags(tmp_path, CLEAN, events=80_000, per_tube={"cd4": {"patient": other}})
    assert "CD3_TUBE_DISAGREEMENT" in flags
    assert "LYMPHOCYTE_TUBE_DISAGREEMENT" in flags


def test_cd4_plus_cd8_mismatch(tmp_path):
    # Many CD3+ CD4− CD8− T cells (e.g. γδ T-cell expansion): CD4 + CD8 falls short of CD3.
    dn_rich = dataclasses.replace(CLEAN, dn_t_per_ul=600)
    flags = _flags(tmp_path, dn_rich, events=80_000)
    assert "CD4_CD8_SUM_MISMATCH" in flags
    assert "CD3_TUBE_DISAGREEMENT" not in flags


def test_no_spillover(tmp_path):
    rows = write_patient(tmp_path, CLEAN, events=20_000, volume_ul=50)
    # Rewrite the NK tube without its spillover matrix.
    sim = simulate_tube(CLEAN, "nk", events=20_000, volume_ul=50, seed=0)
    write_tube(sim, tmp_path / "CLEAN_nk.fcs", spillover=False)
    write_manifest(tmp_path, rows)
    result = gate_batch(tmp_path)
    assert "nk:NO_SPILLOVER" in result.profiles.loc[0, "qc_flags"]


def test_missing_tube(tmp_path):
    flags = _flags(tmp_path, CLEAN, events=20_000, tubes=("nk", "cd8"))
    assert "MISSING_TUBE:cd4" in flags


@pytest.mark.parametrize("flag", sorted(FLAG_DESCRIPTIONS))
def test_every_flag_is_explained_in_readme(flag):
    from conftest import REPO

    assert f"`{flag}`" in (REPO / "README.md").read_text(encoding="utf-8")


# --- the manifest's counting inputs against each other (simulated tubes, known volumes) ---
NEW_FLAGS = ("ALC_DISAGREEMENT", "VOLUME_DISAGREEMENT", "BEAD_FRACTION_LOW",
             "BEAD_FRACTION_HIGH")


def _batch(tmp_path, patient, edit=None, **options):
    """Gate one patient; ``edit`` rewrites each manifest row's fields (a list)."""
    rows = write_patient(tmp_path, patient, **options)
    if edit is not None:
        rows = [",".join(edit(row.split(","))) for row in rows]
    write_manifest(tmp_path, rows)
    result = gate_batch(tmp_path)
    assert result.ok, result.errors
    flags = [f for f in result.profiles.loc[0, "qc_flags"].split(";") if f]
    return result, flags


def test_one_tube_with_an_unrecorded_dilution(tmp_path):
    # The CD4 tube was stained with 10 µL of blood; the manifest says 50 for all three.
    result, flags = _batch(tmp_path, CLEAN, events=40_000, volume_ul=50,
                           per_tube={"cd4": {"volume_ul": 10}})
    assert "cd4:VOLUME_DISAGREEMENT" in flags
    assert "nk:VOLUME_DISAGREEMENT" not in flags and "cd8:VOLUME_DISAGREEMENT" not in flags
    assert "ALC_DISAGREEMENT" not in flags
    implied = result.samples.set_index("tube")["implied_volume_ul"]
    assert implied["cd4"] == pytest.approx(10, rel=0.15)  # the truth: 10 µL stained
    assert implied["nk"] == pytest.approx(50, rel=0.15)


LYMPHOCYTOSIS = PatientSpec("CLL", b_cells_per_ul=150_000, cd4_per_ul=900, cd8_per_ul=600,
                            nk_per_ul=400)


@pytest.mark.parametrize("mistake", ["alc typed 10× too high", "dilution not recorded"])
def test_alc_disagreeing_with_every_tube(tmp_path, mistake):
    if mistake.startswith("alc"):
        result, flags = _batch(tmp_path, CLEAN, lambda f: f[:5] + [f"{float(f[5]) * 10:g}"],
                               events=40_000)
    else:  # stained 2.5 µL of lymphocytotic blood; the manifest left the default 50 µL
        result, flags = _batch(tmp_path, LYMPHOCYTOSIS, lambda f: f[:4] + [""] + f[5:],
                               events=40_000, volume_ul=2.5)
        implied = result.samples["implied_volume_ul"]
        assert implied.between(2.5 / 1.2, 2.5 * 1.2).all(), implied
    assert "ALC_DISAGREEMENT" in flags
    assert not [f for f in flags if f.endswith("VOLUME_DISAGREEMENT")]


@pytest.mark.parametrize("factor", [1.3, 1 / 1.3])
def test_alc_within_the_platforms_usual_disagreement_is_not_flagged(tmp_path, factor):
    _, flags = _batch(tmp_path, CLEAN, lambda f: f[:5] + [f"{float(f[5]) * factor:.4g}"],
                      events=40_000)
    assert not [f for f in flags if f.split(":")[-1] in NEW_FLAGS], flags


def test_alc_tolerance_widens_with_counting_error():
    from immunoprofile.counting.qc import disagrees_with_alc

    # Lymphocytes/µL by beads 1.8× the ALC: flagged with 10,000 events each, not with
    # 100 (a CV of 14 % per count: ×1.8 is then within counting error of ×1.5).
    assert disagrees_with_alc([10_000, 100], [10_000, 100], 50_000, 50, 1.0 / 1.8).tolist() \
        == [True, False]
    # Unknown inputs never flag.
    assert not disagrees_with_alc([10_000] * 3, [10_000, 10_000, 0], [50_000, float("nan"),
                                  50_000], 50, [float("nan"), 1.0, 1.0]).any()


def test_bead_fraction_low_and_high(tmp_path):
    _, low = _batch(tmp_path / "low", CLEAN, events=40_000, beads_per_test=500, volume_ul=50)
    assert {"nk:BEAD_FRACTION_LOW", "cd4:BEAD_FRACTION_LOW"} <= set(low)
    _, high = _batch(tmp_path / "high", CLEAN, events=40_000, beads_per_test=2_000_000,
                     volume_ul=50)
    assert {"nk:BEAD_FRACTION_HIGH", "cd8:BEAD_FRACTION_HIGH"} <= set(high)
    assert not [f for f in low + high if "ALC_DISAGREEMENT" in f or "VOLUME_" in f]


@pytest.mark.slow
def test_sample_data_raises_none_of_the_plausibility_flags():
    from conftest import REPO

    result = gate_batch(REPO / "sample_data")
    assert result.ok
    flags = ";".join(result.profiles["qc_flags"]) + ";".join(result.samples["qc_flags"])
    assert not [f for f in NEW_FLAGS if f in flags], flags


def test_a_flag_in_words_quotes_the_limits_that_raised_it():
    from immunoprofile.counting.qc import describe_flag
    from immunoprofile.gating.panel_spec import PanelQC

    study_like = PanelQC(lymphocyte_events_warn=1_000, counting_sds=0)
    assert "fewer than 1,000 lymphocyte events" in describe_flag("LOW_LYMPHOCYTE_EVENTS",
                                                                 study_like)
    assert "fewer than 2,500 lymphocyte events" in describe_flag("LOW_LYMPHOCYTE_EVENTS",
                                                                 PanelQC())
    lab = PanelQC(cd3_per_ul_pct=15.0, t_sum_pct=8.0, counting_sds=2.0)
    assert "by more than 15 %" in describe_flag("CD3_TUBE_DISAGREEMENT", lab)
    assert "(2 SD)" in describe_flag("CD3_TUBE_DISAGREEMENT", lab)
    assert "counting error" not in describe_flag("CD3_TUBE_DISAGREEMENT", study_like)
    assert "more than 8 %" in describe_flag("CD4_CD8_SUM_MISMATCH", lab)
    # the gate a per-gate flag names is in its sentence, not a list of the study's
    assert "CD3pos population" in describe_flag("LOW_POPULATION_EVENTS:CD3pos")
    assert "NK, CD4+ or CD8+" not in describe_flag("LOW_POPULATION_EVENTS:CD3pos")
    assert "gate CD4pos" in describe_flag("GATE_UNCERTAIN:CD4pos")
    assert describe_flag("NOT_A_FLAG") == "see the README"


def test_lymphosum_gates_sharing_events_are_flagged_beyond_the_limit():
    base = dict(bead_events=5000, lymphocyte_events=10_000, population_events=500,
                events=50_000, beads_counted=True, has_spillover=True)
    shared = [("CD3pos", "NK", 0), ("CD19pos", "NK", 60)]
    assert tube_flags(**base, shared_events=shared, max_shared_pct=0.5) == \
        ["LYMPHOSUM_OVERLAP:CD19pos+NK"]
    assert tube_flags(**base, shared_events=shared, max_shared_pct=1.0) == []  # 0.6 %
    assert tube_flags(**base, shared_events=shared, max_shared_pct=None) == []
    assert "summed twice" in describe_flag("LYMPHOSUM_OVERLAP")
    assert "CD19pos and NK share events" in describe_flag("LYMPHOSUM_OVERLAP:CD19pos+NK")


def test_events_in_both_gates_of_each_pair():
    bits = np.array([0b011, 0b101, 0b111, 0b001, 0], dtype=np.uint32)
    assert events_in_both(bits, [(0, 1), (0, 2), (1, 2)]).tolist() == [2, 2, 1]
    wide = np.array([1 << 40 | 1, 1 << 40, 1], dtype=np.uint64)
    assert events_in_both(wide, [(0, 40)]).tolist() == [1]


def test_events_in_both_reads_the_engines_words_of_64_gates():
    words = np.zeros((2, 3), dtype=np.uint64)
    words[0, :2] = 1  # gate 0: events 0 and 1
    words[1, 1:] = np.uint64(1) << np.uint64(6)  # gate 70: events 1 and 2
    assert events_in_both(words, [(0, 70)]).tolist() == [1]
