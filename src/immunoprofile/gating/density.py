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

numpy only, on purpose: the command line gates without importing scipy (start-up), and
these estimates are cheap enough in numpy on a subsample of events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _gaussian_kernel(sigma_bins: float) -> np.ndarray:
    half = max(1, int(np.ceil(3.0 * sigma_bins)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma_bins, 1e-9)) ** 2)
    return k / k.sum()


def _smooth_axis(h: np.ndarray, sigma_bins: float, axis: int) -> np.ndarray:
    kernel = _gaussian_kernel(sigma_bins)
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, h)


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
    counts, _ = np.histogram(values, bins=edges)
    step = (hi - lo) / bins
    kernel = _gaussian_kernel(bandwidth / step)
    smooth = np.convolve(counts.astype(np.float64), kernel, mode="same")
    return Density1D((edges[:-1] + edges[1:]) / 2.0, smooth, float(np.sum(kernel ** 2)))


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
                 y_range: tuple[float, float], bins: int) -> np.ndarray:
    """Events per bin, (x bins, y bins), over the ranges (events outside are left out).

    ``np.histogram2d``'s answer for equal bins, by integer binning and ``bincount``
    (several times faster).
    """
    fx = (x - x_range[0]) * (bins / (x_range[1] - x_range[0]))
    fy = (y - y_range[0]) * (bins / (y_range[1] - y_range[0]))
    ok = (fx >= 0) & (fx <= bins) & (fy >= 0) & (fy <= bins)
    ix = np.minimum(fx[ok].astype(np.int64), bins - 1)
    iy = np.minimum(fy[ok].astype(np.int64), bins - 1)
    return np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins).astype(
        np.float64)


@dataclass(frozen=True)
class Density2D:
    """A smoothed 2-D histogram: bin centres per axis and density (x bins, y bins)."""

    x: np.ndarray
    y: np.ndarray
    density: np.ndarray


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
    return Density2D((xe[:-1] + xe[1:]) / 2.0, (ye[:-1] + ye[1:]) / 2.0, smooth)


def basins_2d(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Watershed basins of a 2-D density by steepest ascent.

    Every bin points to the highest of itself and its eight neighbours; following the
    pointers (by pointer jumping) ends at a local maximum, whose flat index labels the
    basin.

    Returns
    -------
    labels : numpy.ndarray
        int64, same shape: the flat index of each bin's maximum.
    maxima : numpy.ndarray
        Flat indices of the local maxima.
    """
    nx, ny = density.shape
    padded = np.pad(density, 1, mode="constant", constant_values=-np.inf)
    flat = np.arange(nx * ny).reshape(nx, ny)
    best = density.copy()
    target = flat.copy()
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            neighbour = padded[1 + dx:1 + dx + nx, 1 + dy:1 + dy + ny]
            better = neighbour > best
            best = np.where(better, neighbour, best)
            shifted = np.clip(flat + dx * ny + dy, 0, nx * ny - 1)
            target = np.where(better, shifted, target)
    pointer = target.ravel()
    while True:
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            break
        pointer = jumped
    maxima = np.flatnonzero(target.ravel() == np.arange(nx * ny))
    return pointer.reshape(nx, ny), maxima


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of 2-D points, counter-clockwise (monotone chain)."""
    pts = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(pts) <= 2:
        return pts

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def points_in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test (for placement on a subsample; the engine counts).

    Parameters
    ----------
    x, y : numpy.ndarray
    vertices : numpy.ndarray
        (n, 2), in the same units.
    """
    inside = np.zeros(x.shape, dtype=bool)
    n = len(vertices)
    for k in range(n):
        ax, ay = vertices[k]
        bx, by = vertices[(k + 1) % n]
        if ay == by:
            continue
        crosses = (ay <= y) != (by <= y)
        xs = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < xs)
    return inside
