"""Exact untransformed bounds for a transformed range test.

A range test ``lo <= f(v) < hi`` on a transformed value is, for a monotone ``f``, the same
as ``L <= v <= U`` on the untransformed value. This module finds ``L`` and ``U`` once per
gate dimension — by bisection over the ordered set of float64 values, evaluating
**FlowKit's own transform** — so the kernel compares untransformed values and its answer
is FlowKit's answer for every float64 input, not merely close to it.

Infinite inputs and NaN are classified separately (logicle maps them to -1, for instance).
The pass set can be several intervals: FlowKit's logicle is not monotone to the last bit
near a bound, and gives -1 where its root-finding fails for huge values; every such piece
found is kept, and the result is checked against FlowKit on random doubles. Bounds are
mapped for magnitudes up to ``DOMAIN`` (2**50) or the transform's own ``domain`` (below
where its root-finding starts failing, see ``transforms._with_domain``); beyond, the kernel
evaluates the transform per event instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .opcodes import DOMAIN
from .transforms import TransformSpec

_SIGN_MASK = np.int64(0x7FFFFFFFFFFFFFFF)
_GRID = 4097
_FANOUT = 255


class NonMonotoneTest(Exception):
    """The pass set of a range test is not an interval of untransformed values."""


@dataclass(frozen=True)
class RangeTest:
    """A union of closed intervals of untransformed values, plus what infinities do.

    Attributes
    ----------
    intervals : tuple of (float, float)
        Inclusive ``(lo, hi)`` bounds of values in [-domain, domain] that pass; usually
        one.
    neg_inf, pos_inf, nan : bool
        Whether ``-inf``, ``+inf``, NaN pass (checked apart from the intervals; NaN can
        pass where FlowKit's transform maps it to a number, as logicle maps it to -1).
    """

    intervals: tuple[tuple[float, float], ...]
    neg_inf: bool
    pos_inf: bool
    nan: bool = False
    domain: float = DOMAIN  # beyond it the kernel transforms per event

    def passes(self, values: np.ndarray) -> np.ndarray:
        """Evaluate the test on untransformed values (what the kernel does)."""
        values = np.asarray(values, dtype=np.float64)
        ok = np.zeros(values.shape, dtype=bool)
        for lo, hi in self.intervals:
            ok |= (values >= lo) & (values <= hi)
        ok &= np.abs(values) <= self.domain
        ok |= (values == np.inf) & self.pos_inf
        ok |= (values == -np.inf) & self.neg_inf
        ok |= np.isnan(values) & self.nan
        return ok


def _to_ord(values: np.ndarray) -> np.ndarray:
    bits = np.asarray(values, dtype=np.float64).view(np.int64)
    return np.where(bits >= 0, bits, ~(bits & _SIGN_MASK))


def _from_ord(ords: np.ndarray) -> np.ndarray:
    ords = np.asarray(ords, dtype=np.int64)
    bits = np.where(ords >= 0, ords, (~ords) | np.int64(-0x8000000000000000))
    return bits.view(np.float64)


def _predicate(spec: TransformSpec, lo: float | None, hi: float | None):
    def passes(values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = spec.apply_reference(values)
            ok = np.ones(out.shape, dtype=bool)
            if lo is not None:
                ok &= out >= lo
            if hi is not None:
                ok &= out < hi
        return ok
    return passes


def _bisect(passes, ord_false: int, ord_true: int) -> int:
    """The passing ordinal nearest ``ord_false``; the test flips once between the two."""
    a, b = int(ord_false), int(ord_true)  # a fails, b passes
    while abs(b - a) > 1:
        span = b - a
        probes = []
        for k in range(1, _FANOUT + 1):
            probe = a + span * k // (_FANOUT + 1)
            if probe != a and probe != b and (not probes or probe != probes[-1]):
                probes.append(probe)
        if not probes:
            break
        ok = passes(_from_ord(np.array(probes, dtype=np.int64)))
        j = int(np.argmax(ok)) if ok.any() else len(probes)
        if j < len(probes):
            b = probes[j]
        if j > 0:
            a = probes[j - 1]
    return b


def _search_grid(spec: TransformSpec, lo, hi, hints, limit: float) -> np.ndarray:
    lowest, highest = (int(v) for v in _to_ord(np.array([-limit, limit])))
    step = (highest - lowest) // (_GRID - 1)
    coarse = np.array([lowest + k * step for k in range(_GRID - 1)] + [highest], dtype=np.int64)
    magnitudes = np.logspace(-4, 13, 8001)
    dense = _to_ord(np.concatenate([magnitudes, -magnitudes]))
    extra = [-0.0, 0.0] + [h for h in hints if h is not None and np.isfinite(h)]
    inverse = getattr(spec.reference, "inverse", None)
    for bound in (lo, hi):
        if bound is None:
            continue
        if spec.reference is None:
            extra.append(bound)
        elif inverse is not None:
            try:
                with np.errstate(all="ignore"):
                    value = float(np.asarray(inverse(np.array([[bound]], dtype=float))).ravel()[0])
                if np.isfinite(value):
                    extra.append(value)
            except Exception:  # an inverse is only a search hint
                pass
    near = (_to_ord(np.array(extra, dtype=np.float64))[:, None]
            + np.arange(-64, 65, dtype=np.int64)[None, :]).ravel()
    grid = np.unique(np.concatenate([coarse, dense, near]))
    return grid[(grid >= lowest) & (grid <= highest)]


def range_test(spec: TransformSpec, lo: float | None, hi: float | None,
               hints: tuple[float, ...] = (), max_intervals: int = 8) -> RangeTest:
    """Untransformed intervals equivalent to ``lo <= f(v) < hi`` under FlowKit's ``f``.

    Parameters
    ----------
    spec : TransformSpec
        The dimension's transform (identity for none).
    lo, hi : float or None
        Transformed-scale bounds; None means unbounded, as in Gating-ML.
    hints : tuple of float
        Untransformed values near the boundaries, added to the search grid.
    max_intervals : int
        More intervals than this raise :class:`NonMonotoneTest`.

    Raises
    ------
    NonMonotoneTest
        The pass set is too fragmented, or a random check over all
        doubles disagrees with FlowKit (the caller then evaluates the transform per event).
    """
    if spec.reference is None:
        return _untransformed_test(lo, hi)
    passes = _predicate(spec, lo, hi)
    special = passes(np.array([np.nan, -np.inf, np.inf, -0.0, 0.0]))
    if special[3] != special[4]:
        raise NonMonotoneTest("-0.0 and +0.0 are classified differently")
    limit = min(DOMAIN, spec.domain)
    grid = _search_grid(spec, lo, hi, hints, limit)
    ok = passes(_from_ord(grid))
    intervals = []
    i = 0
    n = grid.size
    while i < n:
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and ok[j + 1]:
            j += 1
        lo_ord = int(grid[i]) if i == 0 else _bisect(passes, int(grid[i - 1]), int(grid[i]))
        hi_ord = int(grid[j]) if j == n - 1 else _bisect(passes, int(grid[j + 1]), int(grid[j]))
        lo_v, hi_v = (float(v) for v in _from_ord(np.array([lo_ord, hi_ord])))
        intervals.append((lo_v, hi_v))
        i = j + 1
    if len(intervals) > max_intervals:
        raise NonMonotoneTest(f"the pass set has {len(intervals)} pieces")
    neg_inf, pos_inf = bool(special[1]), bool(special[2])
    test = RangeTest(tuple(intervals), neg_inf, pos_inf, bool(special[0]), limit)
    _verify(test, passes, grid)
    return test


def _untransformed_test(lo: float | None, hi: float | None) -> RangeTest:
    """``lo <= v < hi`` on the value itself: no search needed."""
    low = -DOMAIN if lo is None else max(float(lo), -DOMAIN)
    high = DOMAIN if hi is None else min(float(np.nextafter(hi, -np.inf)), DOMAIN)
    intervals = ((low, high),) if low <= high else ()
    return RangeTest(intervals, neg_inf=lo is None and (hi is None or hi > -np.inf),
                     pos_inf=hi is None, nan=lo is None and hi is None)


def _verify(test: RangeTest, passes, grid: np.ndarray) -> None:
    """Compare with FlowKit on random doubles and around every bound."""
    rng = np.random.default_rng(20261125)
    lowest, highest = int(grid[0]), int(grid[-1])
    probes = [rng.integers(lowest, highest, size=4000, dtype=np.int64, endpoint=True),
              _to_ord(np.concatenate([x * np.logspace(-4, 13, 3000) for x in (1.0, -1.0)]))]
    for lo_v, hi_v in test.intervals:
        for bound in (lo_v, hi_v):
            if np.isfinite(bound):
                probes.append(_to_ord(np.array([bound]))[0] + np.arange(-3, 4, dtype=np.int64))
    ords = np.concatenate(probes)
    ords = ords[(ords >= lowest) & (ords <= highest)]
    values = _from_ord(ords)
    if not np.array_equal(passes(values), test.passes(values)):
        raise NonMonotoneTest("untransformed bounds disagree with FlowKit on a random check")
