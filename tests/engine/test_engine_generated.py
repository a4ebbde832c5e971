"""The generated kernel (engine.codegen) gives FlowKit's answers where it settles an event
and hands the rest to the generic kernel.

Most of its checks ride on the engine's other tests: ``assert_same_as_flowkit`` compares
both kernels with FlowKit on the Gating-ML set, sample data, simulated tubes, the FlowJo
workspace, the FCS corpus and hypothesis's random gates. Here are the cases that exercise
its own machinery: values it must not settle (NaN, infinities, magnitudes beyond the mapped
domain, events on sloped edges drawn on a transformed axis), more than 64 gates, the
kernel cache on disk, and the choice of kernel.
"""

from __future__ import annotations

import warnings

import flowkit as fk
import numpy as np
import pytest
from flowkit import Dimension, gates
from flowkit import transforms as T
from flowkit._models.dimension import RatioDimension
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fcs_writer import write_fcs
from support.flowkit_reference import assert_same_as_flowkit

from immunoprofile import engine
from immunoprofile.engine import codegen, generated

LOGICLE = T.LogicleTransform(262144.0, 0.5, 4.5, 0.0)
POLYGON = [(0.47, -1000.0), (0.83, -1000.0), (0.82, 30000.0), (0.70, 45000.0), (0.50, 40000.0)]


def _sample(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.Sample(str(path))


def _odd_events(n: int, seed: int) -> np.ndarray:
    """FL1 (x, logicle) and SSC (y, linear) with events on and beside every polygon edge,
    plus NaN, infinities, huge values, signed zeros and values on range bounds."""
    rng = np.random.default_rng(seed)
    x = LOGICLE.inverse(rng.uniform(0.3, 1.0, size=(n, 1)))[:, 0]
    y = rng.uniform(-5000, 60000, size=n)
    # points on the polygon's edges (in logicle space), nudged by 0-3 ulps either way
    t = rng.uniform(0, 1, size=n // 4)
    k = rng.integers(0, len(POLYGON), size=t.size)
    a = np.array(POLYGON)[k]
    b = np.array(POLYGON)[(k + 1) % len(POLYGON)]
    on_x = a[:, 0] + t * (b[:, 0] - a[:, 0])
    on_y = a[:, 1] + t * (b[:, 1] - a[:, 1])
    raw_x = LOGICLE.inverse(on_x.reshape(-1, 1))[:, 0]
    raw_x = raw_x + rng.integers(-3, 4, size=t.size) * np.spacing(raw_x)
    x[: t.size], y[: t.size] = raw_x, on_y
    odd = np.array([np.nan, np.inf, -np.inf, 2.0**60, -(2.0**60), 1e300, 0.0, -0.0,
                    25119.610204385706, 501.3027940600617, 501.30279406006173, -1000.0,
                    45000.0, 30000.0])
    x[-len(odd):] = odd
    y[-2 * len(odd):-len(odd)] = odd
    z = rng.uniform(-200, 262144, size=n)
    z[: len(odd)] = odd
    return np.stack([x, y, z, rng.uniform(0, 1000, size=n)], axis=1)


def _odd_strategy() -> fk.GatingStrategy:
    """A sloped polygon on a logicle axis, an untransformed polygon, ranges with open ends,
    a quadrant, a ratio, ellipses (untransformed and on logicle) and Boolean gates."""
    s = fk.GatingStrategy()
    s.add_transform("logicle", LOGICLE)
    s.add_transform("ratio", T.RatioTransform(["FL3-A", "FL4-A"], 1.0, 0.0, 1.0))

    def fl(channel, lo=None, hi=None):
        return Dimension(channel, transformation_ref="logicle", range_min=lo, range_max=hi)

    root = ("root",)
    s.add_gate(gates.PolygonGate("Lymph", [fl("FL1-A"), Dimension("SSC-A")], POLYGON), root)
    s.add_gate(gates.PolygonGate("Plain", [Dimension("SSC-A"), Dimension("FL3-A")],
                                 [(0, 0), (40000, 10000), (40000, 200000), (0, 150000)]), root)
    s.add_gate(gates.RectangleGate("High", [fl("FL1-A", 0.3813)]), root + ("Lymph",))
    s.add_gate(gates.RectangleGate("Low", [fl("FL1-A", None, 0.3813), fl("FL3-A", 0.2, 0.9)]),
               root + ("Lymph",))
    s.add_gate(gates.RectangleGate("Ratio", [RatioDimension("ratio", None, None,
                                                            range_min=5.0, range_max=1e308)]), root)
    s.add_gate(gates.EllipsoidGate("Ell", [Dimension("SSC-A"), Dimension("FL3-A")],
                                   [20000, 100000], [[1e8, 2e7], [2e7, 4e9]], 2.0), root)
    s.add_gate(gates.EllipsoidGate("EllT", [fl("FL1-A"), fl("FL3-A")], [0.6, 0.8],
                                   [[0.01, 0.0], [0.0, 0.02]], 1.5), root)
    divider_x = fk.QuadrantDivider("dx", "FL1-A", "uncompensated", [5000.0])
    divider_y = fk.QuadrantDivider("dy", "FL3-A", "uncompensated", [100000.0])
    quadrants = [gates.Quadrant(f"Q{i}", divider_refs=["dx", "dy"], divider_ranges=ranges)
                 for i, ranges in enumerate([[(None, 5000.0), (None, 100000.0)],
                                             [(5000.0, None), (None, 100000.0)],
                                             [(None, 5000.0), (100000.0, None)],
                                             [(5000.0, None), (100000.0, None)]])]
    s.add_gate(gates.QuadrantGate("Quad", [divider_x, divider_y], quadrants), root)
    for op, refs in (("and", [("Lymph", False), ("Plain", True)]),
                     ("or", [("Ell", False), ("Ratio", False)]), ("not", [("EllT", False)])):
        gate_refs = [{"ref": r, "path": root, "complement": c} for r, c in refs]
        s.add_gate(gates.BooleanGate(f"B_{op}", op, gate_refs), root)
    return s


@pytest.mark.parametrize("datatype", ["D", "F"])
def test_values_it_cannot_settle_go_to_the_generic_kernel(tmp_path, datatype):
    data = _odd_events(40_000, seed=1)
    if datatype == "F":
        with np.errstate(over="ignore"):
            data = data.astype(np.float32)
    path = write_fcs(tmp_path / "odd.fcs", data, ["FL1-A", "SSC-A", "FL3-A", "FL4-A"],
                     datatype=datatype)
    strategy = _odd_strategy()
    plan = engine.compile(strategy, kernel="generated")
    assert codegen.supported(plan.program) is None
    plan.counts(path)
    assert plan.marked_events > 100  # the edges, the odd values, the logicle ellipse
    counts = assert_same_as_flowkit(strategy, _sample(path), source=path)
    assert counts[("Lymph", ("root",))] > 1000
    assert counts[("Plain", ("root",))] > 1000


def test_more_than_64_gates(tmp_path):
    data = np.random.default_rng(2).uniform(0, 100, size=(5_000, 2))
    path = write_fcs(tmp_path / "many.fcs", data, ["A", "B"], datatype="D")
    strategy = fk.GatingStrategy()
    parent = ("root",)
    for i in range(70):
        strategy.add_gate(gates.RectangleGate(f"G{i}", [Dimension("A", range_min=i * 0.5)]),
                          gate_path=parent)
        if i % 10 == 9:
            parent = parent + (f"G{i}",)
    plan = engine.compile(strategy, kernel="generated")
    assert plan.membership(path).bitmask.shape == (2, 5_000)
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_kernels_agree_on_threads(tmp_path):
    data = _odd_events(450_000, seed=3)
    path = write_fcs(tmp_path / "big.fcs", data, ["FL1-A", "SSC-A", "FL3-A", "FL4-A"],
                     datatype="D")
    plan = engine.compile(_odd_strategy(), kernel="generated")
    one = plan.membership(path, threads=1).bitmask
    two = plan.membership(path, threads=2).bitmask
    plan.kernel = "generic"
    reference = plan.membership(path, threads=1).bitmask
    np.testing.assert_array_equal(one, reference)
    np.testing.assert_array_equal(two, reference)
    plan.kernel = "generated"
    assert plan.counts(path, threads=2) == plan.counts(path, threads=1)


def test_generated_modules_are_kept_and_rewritten_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("IMMUNOPROFILE_CACHE", str(tmp_path / "cache"))
    data = np.random.default_rng(4).uniform(0, 100, size=(1_000, 2))
    path = write_fcs(tmp_path / "small.fcs", data, ["A", "B"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.RectangleGate("G", [Dimension("A", range_min=37.5)]),
                      gate_path=("root",))
    auto = engine.compile(strategy)
    expected = auto.counts(path)  # a small tube, nothing built yet: the generic kernel
    assert not list(generated.kernel_dir().glob("*.py"))
    assert engine.compile(strategy, kernel="generated").counts(path) == expected
    (module,) = generated.kernel_dir().glob("*.py")
    assert "def gate_counts" in module.read_text()
    assert engine.compile(strategy).counts(path) == expected  # now "auto" uses it
    generated._MODULES.clear()
    module.write_text("garbage")
    assert engine.compile(strategy, kernel="generated").counts(path) == expected
    assert "def gate_counts" in module.read_text()


def test_kernel_choice_is_checked():
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.PolygonGate("P", [Dimension("A"), Dimension("B")],
                                        [(0, 0), (1, np.inf), (1, 1)]), gate_path=("root",))
    with pytest.raises(ValueError, match="unknown kernel"):
        engine.compile(strategy, kernel="fast")
    plan = engine.compile(strategy, kernel="generated")
    assert "evaluated exactly" in codegen.supported(plan.program)
    data = np.zeros((3, 2))
    with pytest.raises(ValueError, match="no generated kernel"):
        plan.counts(engine.EventData(
            data=data, pnn=["A", "B"], pns=["", ""], mask=np.full(2, np.uint64(2**64 - 1)),
            scale=np.ones(2), decades=np.zeros(2), log0=np.zeros(2), value_range=np.ones(2),
            gain=np.ones(2), fluoro_indices=[0, 1]))


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(-50, 50), min_size=1, max_size=8),
       signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=8, max_size=8),
       domain=st.sampled_from([2.0**50, 1e6, 3.7e12]))
def test_input_limit_keeps_compensated_values_within_their_domain(weights, signs, domain):
    """Channel values within the limit make compensated values within the domain, summed
    as the kernels sum them (left to right)."""
    values = (("combination", tuple(range(len(weights)))),)
    limit = codegen.input_limit(values, {0: domain}, np.array(weights))
    assert limit is not None and 0 < limit < np.inf  # finite: an infinite input is caught
    terms = [np.float64(limit) * s * np.float64(w)
             for s, w in zip(signs[:len(weights)], weights, strict=True)]
    total = terms[0] + terms[1] if len(terms) == 2 else sum(terms[1:], terms[0])
    assert abs(total) <= domain
    assert codegen.input_limit(values, {0: domain}, np.array([np.nan] + weights[1:])) is None


def test_an_unwritable_kernel_cache_is_not_an_error(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("IMMUNOPROFILE_CACHE", str(blocked))
    data = np.random.default_rng(6).uniform(0, 100, size=(1_000, 2))
    path = write_fcs(tmp_path / "t.fcs", data, ["A", "B"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.RectangleGate("G", [Dimension("A", range_min=12.5)]),
                      gate_path=("root",))
    counts = engine.compile(strategy, kernel="generated").counts(path)
    assert counts[("G", ("root",))] == int((data[:, 0] >= 12.5).sum())


def _on_polygon_edges(polygons, rng, per_edge=4):
    """Events on every edge and vertex of each polygon, and 1-2 ulps beside them."""
    points = []
    for vertices, transform in polygons:
        n = len(vertices)
        for k in range(n):
            a, b = vertices[k], vertices[(k + 1) % n]
            for t in np.concatenate([[0.0, 0.5], rng.uniform(0, 1, per_edge - 2)]):
                q = a + t * (b - a)
                if transform is not None:
                    q = transform.inverse(q.reshape(1, -1))[0]
                for dx in (-2, -1, 0, 1, 2):
                    for dy in (-1, 0, 1):
                        points.append((q[0] + dx * np.spacing(q[0]),
                                       q[1] + dy * np.spacing(q[1])))
    return np.array(points)


@pytest.mark.parametrize("seed", [0, 1])
def test_events_beside_polygon_vertices_and_edges(tmp_path, seed):
    """FlowKit rejects a point outside the vertices' bounding box (inclusive) before it
    winds; events within ulps of a vertex or an edge — on untransformed and logicle axes,
    axis-parallel and sloped edges, complements — are where that, and FlowKit's rounding,
    decide. Both kernels must agree with FlowKit on each of them."""
    rng = np.random.default_rng(seed)
    strategy = fk.GatingStrategy()
    strategy.add_transform("logicle", LOGICLE)
    polygons = []
    for g in range(12):
        transformed = g % 2 == 1
        n = int(rng.integers(3, 8))
        if transformed:
            vertices = np.round(rng.uniform(0.2, 1.0, (n, 2)), int(rng.integers(1, 3)))
        else:
            vertices = np.round(rng.uniform(-1000, 60000, (n, 2)), -int(rng.integers(2, 4)))
        if g % 4 < 2:  # axis-parallel edges only
            xs, ys = vertices[:, 0], vertices[:, 1]
            vertices = np.array([(xs[i // 2 * 2 % n], ys[(i + 1) // 2 * 2 % n])
                                 for i in range(2 * (n // 2))])
        ref = "logicle" if transformed else None
        strategy.add_gate(gates.PolygonGate(
            f"P{g}", [Dimension("A", transformation_ref=ref),
                      Dimension("B", transformation_ref=ref)],
            [tuple(v) for v in vertices], use_complement=bool(g % 3 == 2)), ("root",))
        polygons.append((vertices, LOGICLE if transformed else None))
    data = np.concatenate([_on_polygon_edges(polygons, rng),
                           rng.uniform(-1000, 60000, (5_000, 2))])
    path = write_fcs(tmp_path / "edges.fcs", data, ["A", "B"], datatype="D")
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_a_point_one_ulp_outside_the_box_is_outside(tmp_path):
    vertices = [(7.83189790216296, 5.718592324973173), (0.7733634594947136, 9.771695630814657),
                (1.107412789221145, 4.920784319831157), (0.3050959749016091, 4.058204702043672),
                (4.915757889048268, 8.563074483360563)]
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.PolygonGate("P", [Dimension("A"), Dimension("B")], vertices),
                      ("root",))
    left = np.nextafter(vertices[3][0], -np.inf)
    data = np.array([[left, vertices[3][1]], [vertices[3][0], vertices[3][1]], [3.0, 7.5]])
    path = write_fcs(tmp_path / "box.fcs", data, ["A", "B"], datatype="D")
    assert_same_as_flowkit(strategy, _sample(path), source=path)
    inside = engine.compile(strategy).membership(path)[("P", ("root",))]
    assert not inside[0] and inside[2]


def test_a_vertical_edge_product_that_underflows_does_not_count(tmp_path):
    """(px - ax) * (by - ay) rounds to zero for px a subnormal away from ax: FlowKit then
    does not count the edge, and neither may the kernels."""
    dy = 0.25
    vertices = [(-1.0, 0.0), (1.0, 0.0), (1.0, 2 * dy), (0.0, 2 * dy), (0.0, dy), (-1.0, dy)]
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.PolygonGate("P", [Dimension("A"), Dimension("B")], vertices),
                      ("root",))
    data = np.array([[-5e-324, 1.5 * dy], [-1e-320, 1.5 * dy], [-0.5, 1.5 * dy],
                     [0.5, 1.5 * dy]])
    path = write_fcs(tmp_path / "vertical.fcs", data, ["A", "B"], datatype="D")
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_weights_too_large_for_any_bound_leave_the_tube_to_the_generic_kernel():
    values = (("combination", (0, 1)),)
    assert codegen.input_limit(values, {0: 2.0**50}, np.array([1e308, 1e308])) is None
    tiny = codegen.input_limit(values, {0: 2.0**50}, np.array([1e-310, 0.0]))
    assert tiny is not None and 0 < tiny < np.inf


def test_auto_leaves_a_layout_whose_events_are_mostly_marked_to_the_generic_kernel(tmp_path):
    """Long sloped edges on a logicle axis make wide slabs: most events are marked, so
    "auto" stops using the generated kernel for that layout (answers do not change)."""
    rng = np.random.default_rng(9)
    x = LOGICLE.inverse(rng.uniform(0.3, 0.9, size=(120_000, 1)))[:, 0]
    y = LOGICLE.inverse(rng.uniform(0.3, 0.9, size=(120_000, 1)))[:, 0]
    path = write_fcs(tmp_path / "wide.fcs", np.stack([x, y], axis=1), ["A", "B"],
                     datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_transform("logicle", LOGICLE)
    dims = [Dimension("A", transformation_ref="logicle"),
            Dimension("B", transformation_ref="logicle")]
    strategy.add_gate(gates.PolygonGate("Tri", dims, [(0.3, 0.3), (0.9, 0.35), (0.35, 0.9)]),
                      ("root",))
    plan = engine.compile(strategy)
    first = plan.counts(path)
    assert plan.marked_events > engine.plan.MARKED_SHARE * 120_000
    assert plan.counts(path) == first and plan.marked_events == 0  # the generic kernel
    assert_same_as_flowkit(strategy, _sample(path), source=path)
