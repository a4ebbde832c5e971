"""Adaptive gating on real tubes with manual gates: FlowCAP-I GvHD (../shared/realdata).

Six real FACSCalibur tubes (CD4 FITC / CD8b PE / CD3 PerCP / CD8 APC) with an analyst's
label for every event. The example template ``gating/examples/flowcap_gvhd_cd4_cd8.xml``
places CD3+, CD4+ and CD8+ gates from each tube without seeing the labels; its gates are
held to the labels (1: CD3+ CD4+ T cells, 3: CD8+ T cells). For scale, the best
axis-aligned thresholds chosen with the labels in hand reach F1 0.94–0.98 for CD4 and
0.84–0.96 for CD8 on these six.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, shared_path

from immunoprofile.datasets.evaluation import f1_score
from immunoprofile.gating.adaptive_gating import place_with_template

TEMPLATE = REPO / "gating" / "examples" / "flowcap_gvhd_cd4_cd8.xml"
SAMPLES = range(1, 7)


@pytest.fixture(scope="module")
def scores():
    folder = shared_path("realdata", "flowcap-gvhd")
    out = {}
    for i in SAMPLES:
        placement, member = place_with_template(folder / f"sample{i}.fcs", TEMPLATE)
        labels = np.loadtxt(folder / f"sample{i}.labels.csv", dtype=np.int64)
        cd4, cd8 = member["CD4pos"], member["CD8pos"]
        manual_ratio = np.count_nonzero(labels == 1) / np.count_nonzero(labels == 3)
        out[i] = {"cd4": f1_score(cd4, labels == 1), "cd8": f1_score(cd8, labels == 3),
                  "ratio": np.count_nonzero(cd4) / np.count_nonzero(cd8),
                  "manual_ratio": manual_ratio, "placement": placement}
    return out


def test_cd4_and_cd8_gates_agree_with_the_manual_labels(scores):
    cd4 = [s["cd4"] for s in scores.values()]
    cd8 = [s["cd8"] for s in scores.values()]
    assert np.median(cd4) >= 0.90 and min(cd4) >= 0.80, cd4
    assert np.median(cd8) >= 0.90 and min(cd8) >= 0.80, cd8


@pytest.mark.parametrize("sample", [
    pytest.param(i, marks=pytest.mark.xfail(
        strict=True, reason="sample 5: CD4/CD8 ratio 3.22 against the analyst's 3.94 (-18 %): "
        "its CD8-bright events form a plateau from FL4 430 to 790 that the analyst cut at "
        "about 576, while in sample 6 the same plateau was counted from 416; open in issue 12"))
    if i == 5 else i for i in SAMPLES])
def test_cd4_cd8_ratio_within_15_percent_of_manual(scores, sample):
    s = scores[sample]
    assert abs(s["ratio"] / s["manual_ratio"] - 1) <= 0.15, (s["ratio"], s["manual_ratio"])


def test_placed_gates_are_written_for_every_sample(scores):
    for s in scores.values():
        assert {r.gate_id for r in s["placement"].reports} == {"CD3pos", "CD4pos", "CD8pos"}
        assert all(r.method == "valley" for r in s["placement"].reports)
