"""The Gating-ML 2.0 compliance set (truth files): FlowKit, the reference, matches it, and so
does the compiled engine with each of its kernels.

Reads ../shared/gatingml/ where it lies (skipped with a reason when absent).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import flowkit as fk
import numpy as np
import pytest
from conftest import shared_path
from support.flowkit_reference import flowkit_membership, plan_kernels

from immunoprofile import engine

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


def test_flowkit_matches_truth_all_gates_file(compliance):
    root, sample = compliance
    strategy = fk.parse_gating_xml(str(root / "gml" / "gml_all_gates.xml"))
    assert _assert_matches_truth(root, strategy, sample) == 49


def test_flowkit_matches_truth_per_gate_files(compliance):
    root, sample = compliance
    covered = set()
    for xml in sorted((root / "gml").glob("gml_*_gate.xml")):
        strategy = fk.parse_gating_xml(str(xml))
        _assert_matches_truth(root, strategy, sample)
        covered |= {TRUTH_NAME.get(g, g) for g, _ in strategy.get_gate_ids()}
    truth = {p.stem.removeprefix("Results_") for p in (root / "truth").glob("Results_*.txt")}
    assert truth <= covered | {g for g, _ in fk.parse_gating_xml(
        str(root / "gml" / "gml_all_gates.xml")).get_gate_ids()}


# the compiled engine, each kernel

def _assert_truth(root: Path, strategy, source) -> int:
    """Every gate with a truth file equals it, with each kernel that can gate the strategy;
    returns the gates checked (once each)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineFallbackWarning)
        plan = engine.compile(strategy)
    checked = set()
    for kernel in plan_kernels(plan):
        plan.kernel = kernel
        membership = plan.membership(source)
        for key in plan.gate_ids:
            truth = root / "truth" / f"Results_{TRUTH_NAME.get(key[0], key[0])}.txt"
            if not truth.exists():
                continue
            expected = np.loadtxt(truth, dtype=int).astype(bool)
            np.testing.assert_array_equal(membership[key], expected,
                                          err_msg=f"{key}, {kernel} kernel")
            checked.add(key)
    return len(checked)


@pytest.mark.parametrize("source", ["file", "flowkit-sample"])
def test_engine_matches_truth_all_gates_file(compliance, source):
    root, sample = compliance
    strategy = fk.parse_gating_xml(str(root / "gml" / "gml_all_gates.xml"))
    events = root / "data1.fcs" if source == "file" else sample
    assert _assert_truth(root, strategy, events) == 49


def test_engine_matches_truth_per_gate_files(compliance):
    root, _ = compliance
    checked = 0
    files = sorted((root / "gml").glob("gml_*_gate.xml"))
    assert len(files) >= 40
    for xml in files:
        strategy = fk.parse_gating_xml(str(xml))
        checked += _assert_truth(root, strategy, root / "data1.fcs")
    assert checked >= 70


def test_flowkit_membership_helper_reads_quadrants(compliance):
    root, sample = compliance
    strategy = fk.parse_gating_xml(str(root / "gml" / "gml_quadrant1_gate.xml"))
    results = strategy.gate_sample(sample)
    key = ("FL2P-FL4P", ("root", "Quadrant1"))
    assert flowkit_membership(results, key).sum() > 0
