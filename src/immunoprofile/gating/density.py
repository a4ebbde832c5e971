"""Density estimates on binned events, and the shapes adaptive gates are read from.

Small pure functions over numpy arrays (no FlowKit, no pandas, no I/O), after the
density-based gate placement of openCyto's ``mindensity`` and flowDensity's ``deGate``:

- :func:`density_1d`: a histogram smoothed by a Gaussian (an FFT-free binned kernel
  density estimate; a few hundred bins, so a convolution costs microseconds);
- :func:`peaks_1d` and :func:`valley_between`: the density's local maxima and the deepest
  point between two of them;
- :func:`density_2d`, :func:`basins_2d`: a smoothed 2-D histogram and its watershed basins
  (every bin climbs to its highest neighbour until it reaches a local maximum);
- :func:`convex_hull`: the hull of a set of points (Andrew's monotone chain).

numpy, and the few loops numpy cannot express in one pass compiled in
:mod:`.density_kernels`; no scipy, on purpose: the command line gates without importing it
(start-up), and these estimates are binned, so their cost hardly grows with the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .density_kernels import (
    ascent_basins,
    convex_hull_indices,
    convolve_rows,
    histogram_on_edges,
    order_statistics,
)
from .density_kernels import points_in_polygon as _points_in_polygon


def _gaussian_kernel(sigma_bins: float) -> np.ndarray:
    half = max(1, int(np.ceil(3.0 * sigma_bins)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma_bins, 1e-9)) ** 2)
    return k / k.sum()


def _smooth_axis(h: np.ndarray, sigma_bins: float, axis: int) -> np.ndarray:
    kernel = _gaussian_kernel(sigma_bins)
    if axis == 1:
        return convolve_rows(h, kernel)
    return np.ascontiguousarray(convolve_rows(h.T, kernel).T)


@dataclass(frozen=True)
class Density1D:
    """A smoothed histogram: bin centres and density (events per bin, smoothed)."""

    centres: np.ndarray
    density: np.ndarray
    #: Variance of a smoothed bin relative to its Poisson count (sum of squared kernel
    #: weights): its noise SD is sqrt(count × smoothing_gain).
    smoothing_gain: float = 1.0

    @property
    def step(self) -> float:
        """Bin width, in the axis' units."""
        return float(self.centres[1] - self.centres[0]) if self.centres.size > 1 else 1.0

    def at(self, x: float) -> float:
        """Density at ``x`` (nearest bin)."""
        i = int(np.clip(np.round((x - self.centres[0]) / self.step), 0, self.centres.size - 1))
        return float(self.density[i])


def density_1d(values: np.ndarray, lo: float, hi: float, bins: int = 400,
               bandwidth: float = 0.015) -> Density1D:
    """Smoothed histogram of ``values`` over ``[lo, hi]``.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values on the axis' scale (e.g. logicle units).
    lo, hi : float
        Range binned; values outside it are left out.
    bins : int
        Number of bins.
    bandwidth : float
        Standard deviation of the Gaussian smoothing, in the axis' units.

    Returns
    -------
    Density1D
    """
    edges = np.linspace(lo, hi, bins + 1)
    counts = histogram_on_edges(values, edges)
    step = (hi - lo) / bins
    kernel = _gaussian_kernel(bandwidth / step)
    smooth = np.convolve(counts.astype(np.float64), kernel, mode="same")
    return Density1D((edges[:-1] + edges[1:]) / 2.0, smooth, float(np.sum(kernel ** 2)))


def quantiles(values: np.ndarray, q) -> np.ndarray:
    """``np.quantile(values, q)`` (its default, linear method), bit for bit (bar the sign of
    a zero among tied zeros), from the two order statistics around each quantile
    (:func:`.density_kernels.order_statistics`: two passes, where ``np.quantile``
    partitions the whole array).

    Parameters
    ----------
    values : numpy.ndarray
        Finite values, at least one.
    q : sequence of float
        Quantiles, each from 0 to 1.

    Returns
    -------
    numpy.ndarray
        float64, one value per quantile.
    """
    n = values.size
    if n == 0:
        raise ValueError("quantiles of no values")
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if not np.all((q >= 0.0) & (q <= 1.0)):
        raise ValueError("quantiles must be in the range [0, 1]")
    # numpy's own arithmetic (numpy/lib/_function_base_impl.py, _quantile and _lerp): the
    # virtual index (n - 1) * q, its floor and the next, both the last value at or beyond
    # the end; gamma the virtual index less the floor; a + (b - a) * gamma, or
    # b - (b - a) * (1 - gamma) where gamma >= 0.5
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    nxt = previous + 1
    beyond = virtual >= n - 1
    previous[beyond] = n - 1
    nxt[beyond] = n - 1
    previous_i = previous.astype(np.int64)
    next_i = nxt.astype(np.int64)
    gamma = virtual - np.where(beyond, -1.0, previous)
    ranks = np.unique(np.concatenate([previous_i, next_i]))
    stats = order_statistics(values, ranks)
    a = stats[np.searchsorted(ranks, previous_i)]
    b = stats[np.searchsorted(ranks, next_i)]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def median(values: np.ndarray) -> float:
    """``np.median(values)``, bit for bit (bar the sign of a zero among tied zeros: the
    middle value, or the mean of the two middle ones), from order statistics
    (:func:`.density_kernels.order_statistics`).

    Parameters
    ----------
    values : numpy.ndarray
        Finite values, at least one.
    """
    n = values.size
    if n == 0:
        raise ValueError("the median of no values")
    if n % 2:
        return float(order_statistics(values, np.array([n // 2]))[0])
    a, b = order_statistics(values, np.array([n // 2 - 1, n // 2]))
    return (float(a) + float(b)) / 2.0  # np.mean of the two: their sum over 2


def peaks_1d(d: Density1D, min_height: float) -> np.ndarray:
    """Indices of local maxima of the density at least ``min_height`` high (events/bin)."""
    y = d.density
    if y.size < 3:
        return np.zeros(0, dtype=np.int64)
    left = np.r_[-np.inf, y[:-1]]
    right = np.r_[y[1:], -np.inf]
    # a plateau counts once, at its left end
    is_peak = (y > left) & (y >= right) & (y >= min_height)
    return np.flatnonzero(is_peak)


def valley_between(d: Density1D, i: int, j: int, lo: float = -np.inf,
                   hi: float = np.inf, toward: int | None = None,
                   noise: float = 0.0) -> int | None:
    """Index of the lowest density between bins ``i`` < ``j``, restricted to ``[lo, hi]``.

    Parameters
    ----------
    d : Density1D
    i, j : int
        Bins bounding the search (usually two peaks).
    lo, hi : float
        Range of positions the valley may take.
    toward : int, optional
        A bin (the taller peak): of the bins within ``noise`` standard deviations of the
        floor, the one nearest it is returned — on a flat floor (a positive population
        spread thinly, with no peak of its own) the cut goes where the dominant population's
        tail meets the floor, not at a random point of the floor's noise.
    noise : float
        How many standard deviations of a smoothed count's Poisson noise count as floor.

    Returns
    -------
    int or None
        None when no bin between them lies in the range. Without ``toward``, of equal
        minima the middle one is taken.
    """
    idx = np.arange(i, j + 1)
    idx = idx[(d.centres[idx] >= lo) & (d.centres[idx] <= hi)]
    if idx.size == 0:
        return None
    y = d.density[idx]
    low = y.min()
    if toward is None or noise <= 0:
        floor = np.flatnonzero(y <= low * (1 + 1e-9) + 1e-12)
        return int(idx[floor[floor.size // 2]])
    floor = np.flatnonzero(y <= low + noise * np.sqrt(max(low, 1.0) * d.smoothing_gain))
    return int(idx[floor[np.argmin(np.abs(idx[floor] - toward))]])


def histogram_2d(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float],
                 y_range: tuple[float, float], bins: int,
                 dtype: type = np.float64) -> np.ndarray:
    """Events per bin, (x bins, y bins), over the ranges (events outside are left out).

    ``np.histogram2d``'s answer for equal bins (bar events on an inner bin edge, which may
    fall in either neighbour), by integer binning and ``bincount`` (several times faster).
    Events are kept by the ranges themselves, so one on the upper limit, whose scaled
    position may round above ``bins``, is counted in the last bin, as numpy counts it.
    float64 unless ``dtype`` says otherwise (``np.int64``: the counts as counted).
    """
    ok = (x >= x_range[0]) & (x <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])
    fx = (x[ok] - x_range[0]) * (bins / (x_range[1] - x_range[0]))
    fy = (y[ok] - y_range[0]) * (bins / (y_range[1] - y_range[0]))
    ix = np.clip(fx.astype(np.int64), 0, bins - 1)
    iy = np.clip(fy.astype(np.int64), 0, bins - 1)
    counts = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins)
    return counts if dtype is np.int64 else counts.astype(dtype)


@dataclass(frozen=True)
class Density2D:
    """A smoothed 2-D histogram: bin centres per axis and density (x bins, y bins)."""

    x: np.ndarray
    y: np.ndarray
    density: np.ndarray
    #: The events per bin it was smoothed from (:func:`histogram_2d`, float64).
    counts: np.ndarray | None = None


def density_2d(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float],
               y_range: tuple[float, float], bins: int = 128,
               bandwidth: tuple[float, float] = (0.015, 0.03)) -> Density2D:
    """Smoothed 2-D histogram of events ``(x, y)`` (units of each axis).

    Parameters
    ----------
    x, y : numpy.ndarray
        Finite values.
    x_range, y_range : (float, float)
        Ranges binned.
    bins : int
        Bins per axis.
    bandwidth : (float, float)
        Gaussian smoothing per axis, in the axis' units.
    """
    counts = histogram_2d(x, y, x_range, y_range, bins)
    xe = np.linspace(x_range[0], x_range[1], bins + 1)
    ye = np.linspace(y_range[0], y_range[1], bins + 1)
    sx = bandwidth[0] / (xe[1] - xe[0])
    sy = bandwidth[1] / (ye[1] - ye[0])
    smooth = _smooth_axis(_smooth_axis(counts, sx, 0), sy, 1)
    return Density2D((xe[:-1] + xe[1:]) / 2.0, (ye[:-1] + ye[1:]) / 2.0, smooth, counts)


def basins_2d(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Watershed basins of a 2-D density by steepest ascent.

    Every bin points to the highest of itself and its eight neighbours; following the
    pointers ends at a local maximum, whose flat index labels the
    basin.

    Returns
    -------
    labels : numpy.ndarray
        int64, same shape: the flat index of each bin's maximum.
    maxima : numpy.ndarray
        Flat indices of the local maxima.
    """
    return ascent_basins(density)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of 2-D points, counter-clockwise (monotone chain)."""
    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(pts) <= 2:
        return pts
    return pts[convex_hull_indices(pts)]


def points_in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test inside the polygon's bounding box (inclusive), for
    placement on a subsample; the engine counts.

    Parameters
    ----------
    x, y : numpy.ndarray
    vertices : numpy.ndarray
        (n, 2), in the same units.
    """
    return _points_in_polygon(x, y, vertices)
