"""The compiled loops of gate placement against plain numpy and flowutils answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from immunoprofile.gating import density_kernels as dk
from immunoprofile.gating.adaptive_template import Logicle
from immunoprofile.gating.density import _gaussian_kernel


def _numpy_basins(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steepest ascent in numpy: the highest of each bin and its neighbours (first met on
    ties), pointers jumped to their fixed point."""
    nx, ny = density.shape
    padded = np.pad(density, 1, constant_values=-np.inf)
    flat = np.arange(nx * ny).reshape(nx, ny)
    best, target = density.copy(), flat.copy()
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx or dy:
                neighbour = padded[1 + dx:1 + dx + nx, 1 + dy:1 + dy + ny]
                better = neighbour > best
                best = np.where(better, neighbour, best)
                target = np.where(better, np.clip(flat + dx * ny + dy, 0, nx * ny - 1), target)
    pointer = target.ravel()
    while not np.array_equal(pointer[pointer], pointer):
        pointer = pointer[pointer]
    return pointer.reshape(nx, ny), np.flatnonzero(target.ravel() == np.arange(nx * ny))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 12)),
              elements=st.sampled_from([0.0, 1.0, 2.0, 3.5, 7.0])))
def test_ascent_basins_are_numpys_ties_included(density):
    labels, maxima = dk.ascent_basins(density)
    ref_labels, ref_maxima = _numpy_basins(density)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(maxima, ref_maxima)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.floats(0.3, 6.0), st.integers(0, 2**31))
def test_convolve_rows_is_numpys_convolve(n, sigma, seed):
    weights = _gaussian_kernel(sigma)
    if weights.size > n:
        return  # np.convolve's "same" is then as long as the kernel: not used
    h = np.random.default_rng(seed).poisson(3.0, (5, n)).astype(np.float64)
    expected = np.array([np.convolve(row, weights, mode="same") for row in h])
    np.testing.assert_allclose(dk.convolve_rows(h, weights), expected, rtol=1e-12, atol=1e-12)


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 60), st.integers(0, 2**31))
def test_monotone_chain_hull_holds_every_point_with_strictly_convex_turns(n, seed):
    # integer points: many collinear and repeated, the cases a hull gets wrong
    pts = np.unique(np.random.default_rng(seed).integers(0, 8, (n, 2)).astype(float), axis=0)
    if len(pts) < 3:
        return
    hull = pts[dk.convex_hull_indices(pts)]
    k = len(hull)
    if k >= 3:
        for i in range(k):  # counter-clockwise, no collinear vertex kept
            assert _cross(hull[i], hull[(i + 1) % k], hull[(i + 2) % k]) > 0
        for p in pts:  # every point inside or on the hull
            assert all(_cross(hull[i], hull[(i + 1) % k], p) >= 0 for i in range(k))
    else:  # all points on one line: its two ends
        assert k == 2


def _numpy_points_in_polygon(x, y, vertices):
    inside = np.zeros(x.shape, dtype=bool)
    for k in range(len(vertices)):
        (ax, ay), (bx, by) = vertices[k], vertices[(k + 1) % len(vertices)]
        if ay == by:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= ((ay <= y) != (by <= y)) & (x < xs)
    return inside


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.integers(0, 2**31))
def test_points_in_polygon_is_the_even_odd_rule(n, seed):
    rng = np.random.default_rng(seed)
    vertices = rng.integers(0, 10, (n, 2)).astype(float)  # self-crossing, flat edges too
    x, y = rng.integers(-1, 12, (2, 400)).astype(float)  # points on edges and vertices
    np.testing.assert_array_equal(dk.points_in_polygon(x, y, vertices),
                                  _numpy_points_in_polygon(x, y, vertices))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 900), st.integers(0, 2**31))
def test_histogram_on_edges_is_numpys_histogram(bins, seed):
    rng = np.random.default_rng(seed)
    lo, hi = sorted(rng.uniform(-1.0, 2.0, 2))
    edges = np.linspace(lo, hi, bins + 1)
    # values on every edge and a hair either side of it, beyond the range, and not finite
    values = np.concatenate([rng.uniform(lo - 0.2, hi + 0.2, 500), edges,
                             np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf),
                             [np.nan, np.inf, -np.inf]])
    expected, _ = np.histogram(values[np.isfinite(values)], bins=edges)
    np.testing.assert_array_equal(dk.histogram_on_edges(values, edges), expected)


def test_logicle_lookup_is_within_1e6_of_flowutils():
    from flowutils.transforms import logicle

    rng = np.random.default_rng(0)
    for scale in (Logicle(262144, 0.5, 4.5, 0), Logicle(1024, 0.5, 4.5, 0),
                  Logicle(10_000, 1.0, 4.0, 0.5)):
        v = np.concatenate([rng.lognormal(3, 3, 20_000), -rng.lognormal(3, 2, 2_000),
                            np.linspace(-scale.t / 100, scale.t / 100, 5_000), [0.0, scale.t]])
        exact = logicle(v.reshape(-1, 1), [0], t=scale.t, w=scale.w, m=scale.m,
                        a=scale.a).ravel()
        inside = (exact > -0.5) & (exact < 1.5)
        assert np.max(np.abs(scale.forward(v) - exact)[inside]) < 1e-6
        assert np.isnan(scale.forward(np.array([np.nan]))[0])


_VALUES = arrays(np.float64, st.integers(0, 400),
                 elements=st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
                     [np.nan, np.inf, -np.inf, 0.0, 1.0])))


@settings(max_examples=80, deadline=None)
@given(_VALUES)
def test_finite_range_is_numpys(values):
    lo, hi, n = dk.finite_range(values)
    finite = values[np.isfinite(values)]
    assert n == finite.size
    if n:
        assert (lo, hi) == (finite.min(), finite.max())
    else:
        assert (lo, hi) == (np.inf, -np.inf)


@settings(max_examples=80, deadline=None)
@given(_VALUES, st.integers(1, 300), st.floats(-1e5, 1e5), st.floats(1e-3, 1e5))
def test_histogram_with_tails_counts_every_finite_value_once(values, bins, lo, width):
    """Below, the bins, above: every finite value once; each binned value in its bin or,
    within rounding of an edge, the neighbour (np.histogram's bins as the reference)."""
    hi = lo + width
    counts = dk.histogram_with_tails(values, lo, hi, bins)
    finite = values[np.isfinite(values)]
    assert counts.size == bins + 2 and counts.sum() == finite.size
    assert counts[0] == np.count_nonzero(finite < lo)
    assert counts[-1] == np.count_nonzero(finite > hi)
    reference, _ = np.histogram(finite, bins=bins, range=(lo, hi))
    # an edge value may move one bin: the running totals differ by at most the values
    # lying within rounding of an inner edge
    edges = np.linspace(lo, hi, bins + 1)[1:-1]
    near = sum(np.count_nonzero(np.abs(finite - e) <= 1e-9 * max(1.0, abs(e))) for e in edges)
    assert np.abs(np.cumsum(counts[1:-1]) - np.cumsum(reference)).max(initial=0) <= near


def _densify_by_edges(verts: np.ndarray, step: float) -> np.ndarray:
    """The edge-by-edge loop densify replaced (its reference)."""
    span = np.ptp(verts, axis=0)
    span[span == 0] = 1.0
    out = []
    for k in range(len(verts)):
        a, b = verts[k], verts[(k + 1) % len(verts)]
        rel = np.abs((b - a) / span)
        pieces = max(1, int(np.ceil(max(rel[0], rel[1]) * 0.1 / step)))
        out.extend(a + (b - a) * (i / pieces) for i in range(pieces))
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.sampled_from([0.002, 0.01, 0.02, 0.3]), st.integers(0, 2**31))
def test_densify_is_the_edge_by_edge_loop_bit_for_bit(n, step, seed):
    from immunoprofile.gating.placement import densify

    verts = np.random.default_rng(seed).normal(size=(n, 2)) * [1.0, 1e5]
    np.testing.assert_array_equal(densify(verts, step), _densify_by_edges(verts, step))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 20_000), st.integers(0, 2**31), st.booleans())
def test_bulk_range_holds_the_quantiles_np_percentile_interpolates_between(n, seed, outliers):
    from immunoprofile.gating.gate_views import bulk_range

    rng = np.random.default_rng(seed)
    values = rng.normal(size=n) * rng.uniform(0.01, 1e4)
    if outliers:  # a few far outliers, which must not coarsen the answer
        values[: max(1, n // 2000)] = 1e9
    lo, hi = bulk_range(values)
    if n <= 4096:  # few values: np.percentile's quantiles themselves
        assert (lo, hi) == tuple(np.percentile(values, [0.1, 99.9]))
        return
    ordered = np.sort(values)
    a, b = ordered[int(np.floor(0.001 * (n - 1)))], ordered[int(np.ceil(0.999 * (n - 1)))]
    assert lo <= a and hi >= b
    width = max(b - a, 1e-9)
    assert a - lo <= width / 100 and hi - b <= width / 100, (lo, a, b, hi)


def test_a_lone_far_event_does_not_stretch_a_small_parents_axis():
    from immunoprofile.gating.gate_views import bulk_range

    values = np.random.default_rng(2).normal(0.5, 0.05, 985)
    values[0] = 5.0  # one event far off
    lo, hi = bulk_range(values)
    assert hi < 0.8 and lo > 0.2


_FINITE = arrays(np.float64, st.integers(1, 3000),
                 elements=st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
                     [0.0, 1.0, 1e300, -1e300, 5e-324])))


@settings(max_examples=120, deadline=None)
@given(_FINITE, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_quantiles_are_np_quantile_bit_for_bit(values, q):
    """Ties, a constant array, a range that overflows (1e300 - -1e300), subnormals."""
    from immunoprofile.gating.density import quantiles

    q = q + [0.001, 0.999]
    np.testing.assert_array_equal(quantiles(values, q), np.quantile(values, q))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20_000), st.integers(0, 2**31), st.integers(0, 5))
def test_order_statistics_are_the_sorted_values(n, seed, decimals):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=n) * 10, decimals)  # few decimals: many ties
    ranks = np.unique(rng.integers(0, n, 4))
    np.testing.assert_array_equal(dk.order_statistics(values, ranks), np.sort(values)[ranks])


@settings(max_examples=120, deadline=None)
@given(_FINITE)
def test_median_is_np_median_bit_for_bit(values):
    from immunoprofile.gating.density import median

    assert median(values) == np.median(values)


def test_order_statistics_and_quantiles_refuse_what_numpy_refuses():
    """A rank beyond the values, or a quantile outside [0, 1], is refused (a compiled
    kernel would read out of bounds), as np.quantile refuses it."""
    import pytest

    from immunoprofile.gating.density import quantiles

    values = np.arange(1000.0)
    for bad in ([-0.5], [1.5], [np.nan]):
        with pytest.raises(ValueError):
            quantiles(values, bad)
    for ranks in ([1000], [-1]):
        with pytest.raises(ValueError):
            dk.order_statistics(values, np.array(ranks))
    assert quantiles(values, 0.5)[0] == np.quantile(values, 0.5)


def test_logicle_lookup_takes_a_scalar():
    scale = Logicle(262144.0, 0.5, 4.5, 0.0)
    assert scale.forward(1000.0).shape == (1,)
    assert scale.forward(np.float64(1000.0))[0] == scale.forward(np.array([1000.0]))[0]
