"""QC flags fire on tubes built to trip them, and stay silent on clean ones."""

from __future__ import annotations

import dataclasses

import pytest
from _batch import write_manifest, write_patient

from immunoprofile import gate_batch
from immunoprofile.counting.qc import FLAG_DESCRIPTIONS
from immunoprofile.simulate import PatientSpec, simulate_tube, write_tube

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
