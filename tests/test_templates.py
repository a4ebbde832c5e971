"""The Gating-ML templates: FlowKit parses them, IDs are xs:IDs, users can read them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import REPO

from immunoprofile.errors import PanelError
from immunoprofile.gating.flowkit_gating import gate_tube
from immunoprofile.gating.templates import (
    channel_map,
    load_strategy,
    template_checksums,
    template_path,
)
from immunoprofile.io.fcs import read_tube
from immunoprofile.panels import PANELS
from immunoprofile.simulate import CHANNELS, PatientSpec, simulate_tube, write_tube

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
