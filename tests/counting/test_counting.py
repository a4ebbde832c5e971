"""Counting kernels: hand-computed cases and the plain-numpy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from immunoprofile.counting import (
    cd4_cd8_ratio,
    count_gate_events,
    dual_platform_cells_per_ul,
    poisson_cv,
    relative_spread,
    single_platform_cells_per_ul,
)


def test_single_platform_hand_computed():
    # 2,000 CD4+ events, 10,000 bead events, 50,000 beads in 50 µL: 2000/10000 × 1000 = 200.
    assert single_platform_cells_per_ul(2000, 10_000, 50_000, 50)[0] == pytest.approx(200.0)
    # 300 NK events, 1,500 beads, 48,750 beads per test, 10 µL (diluted blood):
    # 300/1500 × 48750 / 10 = 975 cells/µL.
    assert single_platform_cells_per_ul(300, 1500, 48_750, 10)[0] == pytest.approx(975.0)


def test_single_platform_no_beads_is_nan_not_inf():
    out = single_platform_cells_per_ul([10, 0], [0, 0], 50_000, 50)
    assert np.isnan(out).all()


def test_dual_platform_hand_computed():
    # 500 CD4+ events among 5,000 lymphocytes = 10 %; ALC 2.0 ×10⁹/L = 2,000/µL → 200/µL.
    assert dual_platform_cells_per_ul(500, 5000, 2.0)[0] == pytest.approx(200.0)
    # CLL: 120 NK events among 24,000 lymphocytes, ALC 150 ×10⁹/L → 0.5 % × 150,000 = 750.
    assert dual_platform_cells_per_ul(120, 24_000, 150.0)[0] == pytest.approx(750.0)


def test_dual_platform_unknown_alc_is_nan():
    assert np.isnan(dual_platform_cells_per_ul([5], [100], [np.nan])).all()
    assert np.isnan(dual_platform_cells_per_ul([5], [0], [2.0])).all()


def test_ratio_and_cv_hand_computed():
    assert cd4_cd8_ratio([729, 0], [575, 0]) == pytest.approx([729 / 575, np.nan], nan_ok=True)
    assert poisson_cv(100, 10_000)[0] == pytest.approx(np.sqrt(0.01 + 0.0001))


def test_vectorised_over_samples():
    pop = np.array([100, 200, 300])
    out = single_platform_cells_per_ul(pop, [1000, 2000, 1500], [50_000, 50_000, 40_000],
                                       [50, 25, 10])
    assert out == pytest.approx([100.0, 200.0, 800.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(hnp.arrays(np.uint32, st.integers(0, 300),
                           elements=st.integers(0, 2**32 - 1)), max_size=6),
       st.integers(0, 32))
def test_count_gate_events_matches_numpy(masks, n_gates):
    got = count_gate_events(masks, n_gates)
    expected = np.array([[int(((m >> np.uint32(g)) & np.uint32(1)).sum())
                          for g in range(n_gates)] for m in masks],
                        dtype=np.int64).reshape(len(masks), n_gates)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), st.floats(0, 1e6))),
                max_size=20))
def test_relative_spread_matches_numpy(items):
    groups = np.array([g for g, _ in items], dtype=np.int64)
    values = np.array([np.nan if v is None else v for _, v in items])
    got = relative_spread(values, groups, 5)
    for g in range(5):
        vals = values[(groups == g) & ~np.isnan(values)]
        if vals.size >= 2 and vals.sum() > 0:
            assert got[g] == pytest.approx((vals.max() - vals.min()) / vals.mean())
        else:
            assert np.isnan(got[g])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(0, 10**6)),
       st.integers(0, 10**6), st.floats(1, 1e6), st.floats(0.5, 100))
def test_single_platform_matches_formula(pop, beads, per_test, volume):
    got = single_platform_cells_per_ul(pop, beads, per_test, volume)
    if beads == 0:
        assert np.isnan(got).all()
    else:
        np.testing.assert_allclose(got, pop / beads * per_test / volume, rtol=1e-12)


# Inputs are event counts (whole numbers, possibly missing), as the tables give them.
_COUNTS = hnp.arrays(np.float64, st.integers(1, 30),
                     elements=st.one_of(st.integers(0, 10**7).map(float), st.just(np.nan)))


@settings(max_examples=60, deadline=None)
@given(_COUNTS, _COUNTS)
def test_ratio_dual_and_cv_match_numpy(a, b):
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where((b > 0) & (a >= 0), a / b, np.nan)
        dual = np.where((b > 0), a / b * 2.5 * 1000.0, np.nan)
        cv = np.where((a > 0) & (b > 0), np.sqrt(1 / a + 1 / b), np.nan)
    np.testing.assert_allclose(cd4_cd8_ratio(a, b), ratio, rtol=1e-12)
    np.testing.assert_allclose(dual_platform_cells_per_ul(a, b, 2.5), dual, rtol=1e-12)
    np.testing.assert_allclose(poisson_cv(a, b), cv, rtol=1e-12)


def test_mismatched_lengths_are_refused():
    from immunoprofile.counting import ratio

    with pytest.raises(ValueError, match="different lengths"):
        ratio([1, 2, 3, 4, 5], [1, 2])
    assert single_platform_cells_per_ul(100, [1000, 2000], 50_000, 50) == pytest.approx(
        [100.0, 50.0])
