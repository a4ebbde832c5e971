"""Plain gates (untransformed coordinates) lowered without FlowKit: the same events as
FlowKit gating their Gating-ML, on simulated tubes (simulated data) and random gates."""

from __future__ import annotations

import io

import flowkit as fk
import numpy as np
import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from support.flowkit_reference import flowkit_membership

from immunoprofile import engine
from immunoprofile.engine.plain import (
    PlainBoolean,
    PlainDimension,
    PlainPolygon,
    PlainRectangle,
    gating_ml,
    lower_plain,
    read_gating_ml,
)

SAMPLE = str(REPO / "sample_data" / "P02_cd4.fcs")
D = PlainDimension


def _tube_gates(bead=20_000.0, cd3=450.0, verts=None):
    verts = verts or ((1200.0, -1000.0), (3000.0, -500.0), (40_000.0, 0.0),
                      (39_000.0, 42_000.0), (1300.0, 40_000.0))
    return [
        PlainRectangle("Beads", None, (D("FITC-A"), D("PE-A"), D("PerCP-Cy5-5-A")),
                       ((bead, None), (bead, None), (bead, None))),
        PlainBoolean("NotBeads", None, "not", (("Beads", False),)),
        PlainPolygon("Singlets", "NotBeads", (D("FSC-A", False), D("FSC-H", False)),
                     ((15000, 10200), (300000, 204000), (300000, 300000), (15000, 15000))),
        PlainPolygon("Lymphocytes", "Singlets", (D("PerCP-Cy5-5-A"), D("SSC-A", False)), verts),
        PlainRectangle("CD3pos", "Lymphocytes", (D("FITC-A"),), ((cd3, None),)),
        PlainRectangle("CD3neg", "Lymphocytes", (D("FITC-A"),), ((None, cd3),)),
        PlainRectangle("CD4pos", "CD3pos", (D("PE-A"),), ((1000.0, 1e9),)),
        PlainBoolean("Either", "Singlets", "or", (("CD3pos", False), ("CD4pos", True))),
        PlainBoolean("Both", "Singlets", "and", (("Lymphocytes", False), ("Beads", True))),
    ]


@pytest.fixture(scope="module")
def sample():
    return fk.Sample(SAMPLE)


def _assert_same(gates, sample, events=None):
    plan = engine.GatingPlan.from_program(lower_plain(gates), kernel="generic")
    membership = plan.membership(events if events is not None else sample)
    strategy = fk.parse_gating_xml(io.BytesIO(gating_ml(gates, "test").encode()))
    results = strategy.gate_sample(sample)
    assert sorted(plan.gate_ids) == sorted((n, tuple(p)) for n, p in strategy.get_gate_ids())
    for key in plan.gate_ids:
        expected = flowkit_membership(results, key)
        assert np.array_equal(membership[key], expected), key
    return {key: int(membership[key].sum()) for key in plan.gate_ids}


def test_plain_gates_are_flowkit_gates(sample):
    counts = _assert_same(_tube_gates(), sample, engine.read_events(SAMPLE))
    assert counts[("Beads", ("root",))] > 0
    assert 0 < counts[("CD4pos", ("root", "NotBeads", "Singlets", "Lymphocytes", "CD3pos"))] \
        < counts[("CD3pos", ("root", "NotBeads", "Singlets", "Lymphocytes"))]


@settings(max_examples=15, deadline=None)
@given(bead=st.floats(1e3, 1e5), cd3=st.floats(-200, 5e3),
       cx=st.floats(500, 20_000), cy=st.floats(5_000, 60_000),
       rx=st.floats(100, 30_000), ry=st.floats(1_000, 50_000),
       n=st.integers(3, 40), seed=st.integers(0, 2**16))
def test_random_plain_polygons_and_bounds(sample, bead, cd3, cx, cy, rx, ry, n, seed):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.3, 1.0, n)  # not convex, generally
    verts = tuple((float(cx + rx * r * np.cos(a)), float(cy + ry * r * np.sin(a)))
                  for a, r in zip(angles, radius, strict=True))
    _assert_same(_tube_gates(bead, cd3, verts), sample)


@settings(max_examples=40, deadline=None)
@given(bead=st.floats(1.0, 1e6), cd3=st.floats(-1e4, 1e6, allow_subnormal=False),
       x=st.lists(st.floats(-1e5, 1e6, allow_subnormal=False), min_size=3, max_size=12))
def test_written_gates_read_back_as_they_were(bead, cd3, x):
    """``OUT/gates/<sample>.xml`` reads back to the very gates written (the report draws
    them from the file): every number, bound, complement and parent."""
    verts = tuple((v, v * 0.5 + i) for i, v in enumerate(x))
    gates = _tube_gates(bead, cd3, verts)
    assert read_gating_ml(gating_ml(gates, "a comment -- with dashes")) == gates


def test_reading_refuses_what_is_not_written_by_adaptive_gating():
    with pytest.raises(ValueError, match="not XML"):
        read_gating_ml("<gating:Gating-ML")
    text = (REPO / "gating" / "cd4_tube.xml").read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        read_gating_ml(text)  # transforms, a template's own gates: FlowKit reads those


def test_plain_gate_order_and_shape_are_checked():
    with pytest.raises(ValueError, match="must come first"):
        lower_plain([PlainRectangle("A", "B", (D("FSC-A", False),), ((0.0, None),))])
    with pytest.raises(ValueError, match="non-finite"):
        lower_plain([PlainPolygon("P", None, (D("FSC-A", False), D("SSC-A", False)),
                                  ((0, 0), (1, np.nan), (2, 0)))])
    with pytest.raises(ValueError, match="used twice"):
        lower_plain([PlainRectangle("A", None, (D("FSC-A", False),), ((0.0, None),))] * 2)


def test_lowering_needs_no_flowkit():
    import subprocess
    import sys

    code = ("import sys\nfrom immunoprofile.engine.plain import lower_plain, PlainRectangle, "
            "PlainDimension as D\nlower_plain([PlainRectangle('A', None, (D('FSC-A', False),), "
            "((0.0, None),))])\nassert 'flowkit' not in sys.modules, 'flowkit imported'\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
