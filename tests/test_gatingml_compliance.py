"""The Gating-ML 2.0 compliance set through FlowKit, the reference every engine must match.

Reads ../shared/gatingml/ where it lies (skipped with a reason when absent).
"""

from __future__ import annotations

import flowkit as fk
import numpy as np
import pytest
from conftest import shared_path

# The set names one truth file after the test, not the gate: gml_parent_quadrant_rect_gate.xml
# holds gate ParRectangle1, whose expected membership is Results_ParQuadRect.txt.
TRUTH_NAME = {"ParRectangle1": "ParQuadRect"}


@pytest.fixture(scope="module")
def compliance():
    root = shared_path("gatingml")
    return root, fk.Sample(str(root / "data1.fcs"))


def _assert_matches_truth(root, strategy, sample) -> int:
    results = strategy.gate_sample(sample)
    checked = 0
    names = [g for g, _ in strategy.get_gate_ids()]
    for gate in names:
        truth_file = root / "truth" / f"Results_{TRUTH_NAME.get(gate, gate)}.txt"
        if not truth_file.exists():
            continue  # e.g. a quadrant gate's parent; its quadrants have truth files
        expected = np.loadtxt(truth_file, dtype=int).astype(bool)
        got = np.asarray(results.get_gate_membership(gate), dtype=bool)
        np.testing.assert_array_equal(got, expected, err_msg=gate)
        checked += 1
    return checked


def test_all_gates_file_matches_truth(compliance):
    root, sample = compliance
    strategy = fk.parse_gating_xml(str(root / "gml" / "gml_all_gates.xml"))
    assert _assert_matches_truth(root, strategy, sample) == 49


def test_per_gate_files_match_truth(compliance):
    root, sample = compliance
    covered = set()
    for xml in sorted((root / "gml").glob("gml_*_gate.xml")):
        strategy = fk.parse_gating_xml(str(xml))
        _assert_matches_truth(root, strategy, sample)
        covered |= {TRUTH_NAME.get(g, g) for g, _ in strategy.get_gate_ids()}
    truth = {p.stem.removeprefix("Results_") for p in (root / "truth").glob("Results_*.txt")}
    assert truth <= covered | {g for g, _ in fk.parse_gating_xml(
        str(root / "gml" / "gml_all_gates.xml")).get_gate_ids()}
