"""The Gating-ML templates: FlowKit parses them, IDs are xs:IDs, users can read them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from immunoprofile import gate_sample
from immunoprofile.datasets.simulate import CHANNELS, PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube
from immunoprofile.errors import PanelError, TemplateError
from immunoprofile.gating.flowkit_gating import gate_tube
from immunoprofile.gating.panels import PANELS
from immunoprofile.gating.templates import (
    channel_map,
    check_template,
    check_templates,
    load_strategy,
    template_checksums,
    template_dir,
    template_path,
)
from immunoprofile.io.fcs import read_tube

# xs:ID is an NCName: a letter or underscore, then letters, digits, '.', '-', '_'.
NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
PATIENT = PatientSpec("T1", b_cells_per_ul=3_000, cd4_per_ul=700, cd8_per_ul=400, nk_per_ul=250)


@pytest.mark.parametrize("tube", list(PANELS))
def test_template_parses_and_ids_are_documented(tube):
    strategy = load_strategy(tube)
    ids = [gate_id for gate_id, _ in strategy.get_gate_ids()]
    assert PANELS[tube].population in ids
    readme = (REPO / "gating" / "README.md").read_text(encoding="utf-8")
    for gate_id in ids:
        assert NCNAME.match(gate_id), gate_id
        assert f"`{gate_id}`" in readme, f"{gate_id} not documented in gating/README.md"


def test_template_files_are_in_gating_folder():
    for tube in PANELS:
        assert template_path(tube).parent.name in ("gating", "_templates")
    assert set(template_checksums()) == set(PANELS)


def test_beads_excluded_from_lymphocytes(tmp_path):
    sim = simulate_tube(PATIENT, "cd4", events=20_000, seed=3)
    path = write_tube(sim, tmp_path / "t.fcs")
    gated = gate_tube(read_tube(path), PANELS["cd4"])
    beads = gated.membership("Beads")
    assert beads.sum() > 1000
    assert not (beads & gated.membership("Lymphocytes")).any()


def test_other_instrument_channel_names_give_same_gating(tmp_path):
    """A tube written with another instrument's channel names gates identically."""
    sim = simulate_tube(PATIENT, "nk", events=20_000, seed=4)
    canto = write_tube(sim, tmp_path / "canto.fcs")
    rename = {"FSC-A": "FS INT", "FSC-H": "FS PEAK", "SSC-A": "SS INT", "FITC-A": "FL1-A",
              "PE-A": "FL2-A", "PerCP-Cy5-5-A": "FL3-A"}
    other = write_tube(sim, tmp_path / "other.fcs", rename=rename)
    a = gate_tube(read_tube(canto), PANELS["nk"])
    b = gate_tube(read_tube(other), PANELS["nk"])
    assert a.gate_ids == b.gate_ids
    np.testing.assert_array_equal(a.bitmask, b.bitmask)


def test_missing_scatter_channel_is_named(tmp_path):
    sim = simulate_tube(PATIENT, "nk", events=2_000, seed=5)
    path = write_tube(sim, tmp_path / "nofsch.fcs", channels=[c for c in CHANNELS if c != "FSC-H"])
    tube = read_tube(path)
    with pytest.raises(PanelError, match="no FSC-H channel — the Singlets gate needs it"):
        channel_map(PANELS["nk"], tube.markers, tube.scatter, source=path.name)


# --- a custom template that cannot give the counts is refused before any tube is gated ---
def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def _templates(tmp_path, tube, edit) -> Path:
    """A copy of the shipped templates folder with one tube's template edited."""
    folder = tmp_path / "templates"
    shutil.copytree(template_dir(), folder)
    path = folder / f"{tube}_tube.xml"
    text = path.read_text(encoding="utf-8")
    edited = edit(text)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    return folder


def _rename_gate(old: str, new: str):
    return lambda text: text.replace(f'gating:id="{old}"', f'gating:id="{new}"').replace(
        f'gating:parent_id="{old}"', f'gating:parent_id="{new}"')


def test_renamed_population_gate_stops_the_batch(tmp_path, small_cohort):
    # It ran with exit 0 and an empty cd4_per_ul for every patient.
    folder = _templates(tmp_path, "cd4", _rename_gate("CD4pos", "CD4plus"))
    out = tmp_path / "out"
    proc = _run_cli("gate", small_cohort, "-o", out, "--templates", folder, "-q")
    assert proc.returncode == 2, proc.stderr
    assert f"{folder / 'cd4_tube.xml'}: no gate CD4pos" in proc.stderr
    assert "gates in cd4_tube.xml: " in proc.stderr and "CD4plus" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "profiles.csv").exists()


@pytest.mark.parametrize("tube, gate_id", [(t, g) for t in PANELS for g in PANELS[t].gate_ids])
def test_every_gate_the_counts_read_is_required(tmp_path, tube, gate_id):
    folder = _templates(tmp_path, tube, _rename_gate(gate_id, f"{gate_id}_old"))
    with pytest.raises(TemplateError, match=rf"{tube}_tube.xml: no gate {gate_id} "):
        check_template(tube, folder)
    with pytest.raises(TemplateError):
        check_templates(folder)


def _in_gate(gate_id: str, pattern: str, replacement: str):
    """Edit the first match of ``pattern`` from gate ``gate_id``'s opening tag on (the
    templates' other gates and thresholds may change: the edit does not depend on them)."""
    def edit(text: str) -> str:
        start = text.rfind("<", 0, text.index(f'gating:id="{gate_id}"'))
        return text[:start] + re.sub(pattern, replacement, text[start:], count=1)
    return edit


@pytest.mark.parametrize("tube, edit, message", [
    ("cd8", _in_gate("CD8pos", r'data-type:name="[^"]*"', 'data-type:name="APC-A"'),
     "gate CD8pos uses channel APC-A, which is not fitted to a tube's channels"),
    ("nk", _in_gate("NK", r'gating:parent_id="[^"]*"', 'gating:parent_id="Beads"'),
     "gate NK is not within Lymphocytes"),
    ("cd4", _in_gate("CD4pos", r'gating:parent_id="[^"]*"', 'gating:parent_id="Tcells"'),
     "gate CD4pos has parent_id Tcells, which is no gate of the template"),
    ("cd4", _in_gate("CD3pos", r'gating:parent_id="[^"]*"', 'gating:parent_id="CD4pos"'),
     "gate CD3pos is not within Lymphocytes"),  # a cycle of parents: refused, not a hang
    ("cd4", lambda t: t.replace('gating:id="CD3pos"', 'gating:id="Beads"'),
     "gate ID Beads is used twice"),
    ("cd8", _in_gate("CD8pos", r'gating:transformation-ref="[^"]*"',
                     'gating:transformation-ref="Logicle_x"'),
     "gate CD8pos refers to transformation Logicle_x, which the template does not define"),
    ("nk", _in_gate("Lymphocytes", r'gating:compensation-ref="[^"]*"',
                    'gating:compensation-ref="Comp1"'),
     "gate Lymphocytes refers to compensation Comp1, which is neither FCS"),
])
def test_gate_that_cannot_be_applied_is_refused(tmp_path, tube, edit, message):
    folder = _templates(tmp_path, tube, edit)
    with pytest.raises(TemplateError) as error:
        check_template(tube, folder)
    assert str(error.value).startswith(f"{folder / f'{tube}_tube.xml'}: ")
    assert message in str(error.value)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t[: len(t) // 2], "not a valid Gating-ML 2.0 template"),  # not well-formed
    (lambda t: re.sub(r'transforms:T="[^"]*"', 'transforms:T="many"', t),  # FlowKit refuses
     "not a valid Gating-ML 2.0 template"),
])
def test_unparsable_template_is_reported_once_before_gating(tmp_path, small_cohort, edit,
                                                            message):
    # Each tube's errors.csv row repeated the message, and the run exited 1.
    folder = _templates(tmp_path, "cd8", edit)
    out = tmp_path / "out"
    proc = _run_cli("gate", small_cohort, "-o", out, "--templates", folder, "-q")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.count("cd8_tube.xml") == 1, proc.stderr
    assert not (out / "errors.csv").exists()


def test_gate_tube_and_the_api_refuse_a_template_that_lost_a_gate(tmp_path, small_cohort):
    folder = _templates(tmp_path, "nk", _rename_gate("NK", "NKcells"))
    proc = _run_cli("gate-tube", small_cohort / "P01_nk.fcs", "--sample-id", "P01_nk",
                    "--templates", folder, "-o", tmp_path / "P01_nk.npz")
    assert proc.returncode == 2, proc.stderr
    assert "nk_tube.xml: no gate NK " in proc.stderr
    assert not (tmp_path / "P01_nk.npz").exists()
    with pytest.raises(TemplateError, match="nk_tube.xml: no gate NK "):
        gate_sample(small_cohort / "P01_nk.fcs", templates=folder)
    # A tube whose template is intact is still gated with that folder.
    assert len(gate_sample(small_cohort / "P01_cd4.fcs", templates=folder))


def test_checking_the_shipped_templates_needs_no_flowkit_once_checked():
    code = ("import sys; from immunoprofile.gating.templates import check_templates; "
            "check_templates(); print('flowkit' in sys.modules)")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
    assert again.stdout.strip() == "False", again.stderr
