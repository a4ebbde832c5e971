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
from immunoprofile.engine.kernel import _polygon_grids
from immunoprofile.engine.pack import program_arrays
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


def _grid_cases(seed: int):
    """Polygons on untransformed axes with enough vertices for the kernel's occupancy grid
    (a self-intersecting star, a fine non-convex outline), and events placed where a grid
    could go wrong: on vertices, on edges, on cell borders, outside, NaN and infinite."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(16, 80))  # a placed lymphocyte gate has 20-40
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = 0.6 + 0.3 * np.sin(int(rng.integers(1, 5)) * angles + rng.uniform(0, 6)) \
        + rng.uniform(-0.05, 0.05, n)
    outline = np.column_stack([5_000 + 4_000 * radius * np.cos(angles),
                               30_000 + 20_000 * radius * np.sin(angles)])
    k = 2 * int(rng.integers(4, 12)) + 1  # a star polygon {k/2}: crosses itself
    star_angles = 2 * np.pi * ((np.arange(k) * 2) % k) / k
    star = np.column_stack([5_000 + 4_000 * np.cos(star_angles),
                            30_000 + 20_000 * np.sin(star_angles)])
    points = []
    for verts in (outline, star):
        x0, y0 = verts.min(axis=0)
        x1, y1 = verts.max(axis=0)
        points.append(verts)
        nxt = np.roll(verts, -1, axis=0)
        for t in (0.5, 1 / 3, rng.uniform()):
            points.append(verts + t * (nxt - verts))  # on the edges (up to rounding)
        # on the 128-cell borders and their neighbouring floats
        gx = x0 + np.arange(129) * (x1 - x0) / 128
        gy = y0 + np.arange(129) * (y1 - y0) / 128
        border = np.column_stack([np.repeat(gx, 8), rng.uniform(y0, y1, 129 * 8)])
        points += [border, np.column_stack([rng.uniform(x0, x1, 129 * 8), np.repeat(gy, 8)]),
                   np.nextafter(border, np.inf), np.nextafter(border, -np.inf)]
        span = np.array([x1 - x0, y1 - y0])
        points.append(rng.uniform([x0, y0] - 0.1 * span, [x1, y1] + 0.1 * span, (20_000, 2)))
    points.append(np.array([[np.nan, 30_000], [5_000, np.nan], [np.inf, 30_000],
                            [-np.inf, 30_000], [5_000, np.inf], [5_000, -np.inf]]))
    return outline, star, np.concatenate(points)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_polygon_grid_is_flowkit_exactly(seed):
    outline, star, events = _grid_cases(seed)
    sample = fk.Sample(events, channel_labels=["A", "B"], sample_id="grid")
    gates = [PlainPolygon(name, None, (D("A", False), D("B", False)),
                          tuple((float(x), float(y)) for x, y in verts))
             for name, verts in (("Outline", outline), ("Star", star))]
    gates.append(PlainPolygon("Inner", "Outline", (D("A", False), D("B", False)),
                              tuple((float(x), float(y)) for x, y in star)))
    _assert_same(gates, sample)
    arrays = program_arrays(lower_plain(gates[:1]))
    grid_of = _polygon_grids(arrays.gate_kind, arrays.gate_exact, arrays.gate_axis_start,
                             arrays.gate_axes, arrays.axis_xform, arrays.xf_kind,
                             arrays.gate_vert_start, arrays.verts)[2]
    assert grid_of[0] == 0, "the outline is counted through its grid"


@pytest.mark.parametrize("scale", [1e-160, 1e-150, 1e150, 1e160])
def test_polygons_of_extreme_coordinates_are_flowkit_exactly(tmp_path, scale):
    """A float64 file's extreme values: where FlowKit's is-left products overflow or
    underflow its answer changes within a grid cell, so no grid is built there."""
    from support.fcs_writer import write_fcs

    angles = np.arange(8) * np.pi / 4
    verts = np.column_stack([np.cos(angles), np.sin(angles)]) * scale
    axis = np.linspace(-0.99, 0.99, 60) * scale
    x, y = np.meshgrid(axis, axis)
    path = tmp_path / "extreme.fcs"
    write_fcs(path, np.column_stack([x.ravel(), y.ravel()]), ["A", "B"], datatype="D")
    sample = fk.Sample(str(path))
    gates = [PlainPolygon("P", None, (D("A", False), D("B", False)),
                          tuple((float(a), float(b)) for a, b in verts))]
    _assert_same(gates, sample, engine.read_events(str(path)))
