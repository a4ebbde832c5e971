"""The compiled inner loops of gate placement (Numba, through :mod:`immunoprofile._compile.jit`).

Placement's numpy code spent most of its time in loops that numpy can only express as many
passes over the data (or hands to a threaded BLAS that contends with the engine's threads):
a table lookup of the logicle transform, a histogram of equal bins, a 2-D histogram's
smoothing, an even-odd point-in-polygon test, steepest-ascent pointers on a 2-D density,
and a monotone-chain convex hull. Here each is one pass, a small pure function over
arrays; the callers in :mod:`.density` and :mod:`.adaptive_template` keep the documented
interfaces. Kernels of the ``placement`` group are built ahead of time with the others (see
:mod:`immunoprofile._compile.aot`).
"""

from __future__ import annotations

import math

import numpy as np

from .._compile.jit import kernel


@kernel(args=[("f8", 1), ("f8", 1)], returns=("f8", 1), group="placement")
def _interpolate_on_grid(positions, table):
    # table at fractional positions (0 … len - 1); positions beyond the table take its end
    # values, NaN stays NaN
    out = np.empty(positions.size)
    last = table.size - 1
    for i in range(positions.size):
        pos = positions[i]
        if pos != pos:
            out[i] = pos
        elif pos <= 0.0:
            out[i] = table[0]
        elif pos >= last:
            out[i] = table[last]
        else:
            k = int(pos)
            w = pos - k
            out[i] = table[k] + w * (table[k + 1] - table[k])
    return out


def lookup_on_asinh_grid(values: np.ndarray, table: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A monotone function of signal values, interpolated in a table uniform in asinh.

    Parameters
    ----------
    values : numpy.ndarray
        Untransformed values (signal units).
    table : numpy.ndarray
        The function at ``x_k = sinh(u0 + k·du) / s``, k = 0 … len − 1.
    grid : numpy.ndarray
        ``[s, u0, du]``: the table's asinh scale (1/signal units), start and step.

    Returns
    -------
    numpy.ndarray
        float64, one value per input (clamped to the table's ends; NaN stays NaN).
    """
    # the position in the table by numpy's arcsinh, which runs on SIMD units where the CPU
    # has them (AVX-512: about 10x faster than a scalar asinh per value in a compiled
    # loop, which was placement's largest single cost); then one compiled pass to
    # interpolate
    s, u0, du = (float(g) for g in np.asarray(grid, dtype=np.float64))
    positions = np.ascontiguousarray(values, dtype=np.float64) * s  # a scalar: shape (1,)
    np.arcsinh(positions, out=positions)
    positions -= u0
    positions /= du
    return _interpolate_on_grid(positions, np.ascontiguousarray(table, dtype=np.float64))


@kernel(args=[("f8", 1), ("f8", 1)], returns=("i8", 1), group="placement")
def _histogram_on_edges(values, edges):
    # np.histogram(values, bins=edges.size - 1, range=(edges[0], edges[-1])), NumPy's own
    # index arithmetic and its correction against the edges, in one pass
    bins = edges.size - 1
    first = edges[0]
    last = edges[bins]
    denom = last - first
    counts = np.zeros(bins, dtype=np.int64)
    for i in range(values.size):
        v = values[i]
        if not (v >= first and v <= last):
            continue
        k = int(((v - first) / denom) * bins)
        if k == bins:
            k -= 1
        if v < edges[k]:
            k -= 1
        elif k != bins - 1 and v >= edges[k + 1]:
            k += 1
        counts[k] += 1
    return counts


def histogram_on_edges(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Events per bin of equal bins, as ``np.histogram(values, bins=len(edges) - 1,
    range=(edges[0], edges[-1]))`` counts them (NumPy sorts when given the edges; this is
    one pass).

    Parameters
    ----------
    values : numpy.ndarray
        Values in the edges' units; NaN and values outside the edges are left out.
    edges : numpy.ndarray
        ``np.linspace(lo, hi, bins + 1)``: at least two.

    Returns
    -------
    numpy.ndarray
        int64, events per bin.
    """
    return _histogram_on_edges(np.ascontiguousarray(values, dtype=np.float64),
                               np.ascontiguousarray(edges, dtype=np.float64))


@kernel(args=[("f8", 1)], returns=("f8", 1), group="placement")
def _finite_range(values):
    # [smallest, largest, how many] of the finite values (NaN and ±inf left out)
    lo = math.inf
    hi = -math.inf
    n = 0
    for i in range(values.size):
        v = values[i]
        if v - v == 0.0:  # finite: inf - inf and NaN - NaN are NaN
            n += 1
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    out = np.empty(3)
    out[0] = lo
    out[1] = hi
    out[2] = n
    return out


def finite_range(values: np.ndarray) -> tuple[float, float, int]:
    """Smallest and largest finite value, and how many values are finite (one pass).

    Returns
    -------
    (float, float, int)
        (inf, -inf, 0) when none is.
    """
    lo, hi, n = _finite_range(np.ascontiguousarray(values, dtype=np.float64))
    return float(lo), float(hi), int(n)


@kernel(args=[("f8", 1), ("i8", 1)], returns=("f8", 1), group="placement")
def _order_statistics(values, ranks):
    # the values that would sit at positions ``ranks`` (each within 0 … n-1) of the sorted
    # ``values``: a histogram of 4,096 equal bins finds each rank's bin, and only the
    # values of those bins are sorted. Two passes and a small sort, where a partition moves
    # the whole array. It needs every value of a bin to be at least every value of the bins
    # below it: true of (v - lo) * scale in IEEE arithmetic, but the kernels' fastmath may
    # evaluate it differently in different lanes, so it is checked (each bin's extremes),
    # and every value is sorted when it does not hold; each value's bin is computed once.
    out = np.empty(ranks.size)
    n = values.size
    if n == 0:
        out[:] = np.nan
        return out
    lo = values[0]
    hi = values[0]
    for i in range(n):
        v = values[i]
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    if not hi > lo:  # every value equal
        out[:] = lo
        return out
    bins = 4096
    if not hi - lo < math.inf:  # the range overflows: one bin, every value sorted
        bins = 1
    scale = bins / (hi - lo) if bins > 1 else 0.0
    counts = np.zeros(bins, dtype=np.int64)
    low = np.full(bins, math.inf)
    high = np.full(bins, -math.inf)
    bin_of = np.empty(n, dtype=np.int64)
    for i in range(n):
        v = values[i]
        b = min(max(int((v - lo) * scale), 0), bins - 1) if bins > 1 else 0
        bin_of[i] = b
        counts[b] += 1
        low[b] = min(low[b], v)
        high[b] = max(high[b], v)
    below = -math.inf
    for b in range(bins):
        if counts[b] > 0:
            if low[b] < below:  # not monotone: sort everything
                ordered = np.sort(values)
                for k in range(ranks.size):
                    out[k] = ordered[ranks[k]]
                return out
            below = high[b]
    starts = np.empty(bins, dtype=np.int64)
    total = 0
    for b in range(bins):
        starts[b] = total
        total += counts[b]
    wanted = np.zeros(bins, dtype=np.bool_)
    rank_bin = np.empty(ranks.size, dtype=np.int64)
    for k in range(ranks.size):
        b = 0
        while b + 1 < bins and starts[b + 1] <= ranks[k]:  # the last bin starting at or below
            b += 1
        rank_bin[k] = b
        wanted[b] = True
    # the wanted bins' values, bins in ascending order, so position = values of the wanted
    # bins below + rank within the bin
    offset = np.zeros(bins, dtype=np.int64)
    size = 0
    for b in range(bins):
        if wanted[b]:
            offset[b] = size
            size += counts[b]
    buffer = np.empty(size)
    filled = 0
    for i in range(n):
        if wanted[bin_of[i]]:
            buffer[filled] = values[i]
            filled += 1
    buffer.sort()
    for k in range(ranks.size):
        b = rank_bin[k]
        out[k] = buffer[offset[b] + ranks[k] - starts[b]]
    return out


def order_statistics(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The values at positions ``ranks`` of ``values`` sorted: ``np.sort(values)[ranks]``,
    exactly (bar the sign of a zero among tied zeros), in two passes (no sort or partition
    of the whole array).

    Parameters
    ----------
    values : numpy.ndarray
        Finite values (NaN and infinities are the caller's to leave out).
    ranks : numpy.ndarray
        0-based positions, each from 0 to ``values.size - 1``.

    Returns
    -------
    numpy.ndarray
        float64, one value per rank (NaN for every rank when ``values`` is empty).
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    ranks = np.ascontiguousarray(ranks, dtype=np.int64)
    if ranks.size and values.size and not (ranks.min() >= 0 and ranks.max() < values.size):
        raise ValueError(f"ranks must lie from 0 to {values.size - 1}")
    return _order_statistics(values, ranks)


@kernel(args=[("f8", 1), ("f8", 1)], returns=("i8", 1), group="placement")
def _histogram_with_tails(values, span):
    # [finite values below span[0], span[2] equal bins over span[0]–span[1], those above];
    # a bin's index by one multiplication (a value within rounding of an inner edge may
    # fall in either neighbour)
    lo = span[0]
    hi = span[1]
    bins = int(span[2])
    scale = bins / (hi - lo)
    counts = np.zeros(bins + 2, dtype=np.int64)
    for i in range(values.size):
        v = values[i]
        if not v - v == 0.0:
            continue
        if v < lo:
            counts[0] += 1
        elif v > hi:
            counts[bins + 1] += 1
        else:
            counts[min(int((v - lo) * scale), bins - 1) + 1] += 1
    return counts


def histogram_with_tails(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Finite values per equal bin over ``[lo, hi]``, with the finite values below ``lo``
    first and those above ``hi`` last (one pass; a value within rounding of an inner bin
    edge may be counted in either neighbour: for ranges, not for densities).

    Returns
    -------
    numpy.ndarray
        int64, ``bins + 2`` counts.
    """
    return _histogram_with_tails(np.ascontiguousarray(values, dtype=np.float64),
                                 np.array([lo, hi, bins], dtype=np.float64))


@kernel(args=[("f8", 2), ("f8", 1)], returns=("f8", 2), group="placement")
def _convolve_rows(h, weights):
    # np.convolve(row, weights, mode="same") for every row: out[i] = Σ_j row[j]·w[i + c − j]
    rows, n = h.shape
    size = weights.size
    centre = (size - 1) // 2
    out = np.zeros((rows, n))
    for r in range(rows):
        for i in range(n):
            total = 0.0
            for k in range(size):
                j = i + centre - k
                if 0 <= j < n:
                    total += h[r, j] * weights[k]
            out[r, i] = total
    return out


def convolve_rows(h: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every row of ``h`` convolved with ``weights``, as ``np.convolve(row, weights,
    mode="same")`` (an odd number of weights, no longer than a row).

    Parameters
    ----------
    h : numpy.ndarray
        (rows, n), e.g. a 2-D histogram (events per bin).
    weights : numpy.ndarray
        The smoothing kernel.

    Returns
    -------
    numpy.ndarray
        float64, (rows, n).
    """
    return _convolve_rows(np.ascontiguousarray(h, dtype=np.float64),
                          np.ascontiguousarray(weights, dtype=np.float64))


@kernel(args=[("f8", 1), ("f8", 1), ("f8", 1), ("f8", 1)], returns=("u1", 1),
        group="placement")
def _points_in_polygon(x, y, vx, vy):
    n = vx.size
    out = np.zeros(x.size, dtype=np.uint8)
    xmin = vx.min()
    xmax = vx.max()
    ymin = vy.min()
    ymax = vy.max()
    # the edges that are not horizontal, with their spans, once (the same values the loop
    # computed per point: the answers are bit for bit the same)
    ex = np.empty(n)
    ey = np.empty(n)
    ey1 = np.empty(n)
    edx = np.empty(n)
    edy = np.empty(n)
    m = 0
    for k in range(n):
        ay = vy[k]
        by = vy[(k + 1) % n]
        if ay == by:
            continue
        ex[m] = vx[k]
        ey[m] = ay
        ey1[m] = by
        edx[m] = vx[(k + 1) % n] - vx[k]
        edy[m] = by - ay
        m += 1
    # Bands between successive distinct vertex y's: within one, py in [ys[b], ys[b + 1]),
    # the edges with (ay <= py) != (by <= py) are the same ones, those whose lower end is
    # at or below ys[b] and upper end above it. Each event tests only its band's edges
    # (a binary search, then two or so), in the order the loop over all edges met them,
    # with the same span test (always passed within a band). A polygon of thousands of
    # vertices, whose bands would take their square, is one band of every edge.
    ys = np.unique(vy)
    if ys.size * m > 1_000_000:
        ys = ys[:1]
    bands = ys.size
    band_start = np.zeros(bands + 1, dtype=np.int64)
    members = np.empty(max(bands * m, 1), dtype=np.int64)
    filled = 0
    for b in range(bands):
        band_start[b] = filled
        for k in range(m):
            low = min(ey[k], ey1[k])
            high = max(ey[k], ey1[k])
            if bands == 1 or (low <= ys[b] and ys[b] < high):
                members[filled] = k
                filled += 1
    band_start[bands] = filled
    top = 1
    while top * 2 < bands:
        top *= 2
    for i in range(x.size):
        px = x[i]
        py = y[i]
        if not (xmin <= px <= xmax and ymin <= py <= ymax):
            continue
        # the last band starting at or below py (ys[0] <= py: the box holds it)
        b = 0
        step = top
        while step > 0:  # branch-free: the step halves whatever the comparison says
            nxt = b + step
            b = nxt if nxt < bands and ys[nxt] <= py else b
            step >>= 1
        inside = False
        for e in range(band_start[b], band_start[b + 1]):
            k = members[e]
            ay = ey[k]
            if (ay <= py) != (ey1[k] <= py):
                xs = ex[k] + (py - ay) * edx[k] / edy[k]
                if px < xs:
                    inside = not inside
        out[i] = inside
    return out


def points_in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, inside the polygon's bounding box.

    Parameters
    ----------
    x, y : numpy.ndarray
        Points (any units).
    vertices : numpy.ndarray
        (n, 2), in the same units.

    Returns
    -------
    numpy.ndarray
        bool per point.
    """
    v = np.asarray(vertices, dtype=np.float64)
    return _points_in_polygon(np.ascontiguousarray(x, dtype=np.float64),
                              np.ascontiguousarray(y, dtype=np.float64),
                              np.ascontiguousarray(v[:, 0]),
                              np.ascontiguousarray(v[:, 1])).view(bool)


@kernel(args=[("f8", 2)], returns=("i8", 1), group="placement")
def _ascent_targets(density):
    # each bin's highest neighbour (itself included); on ties the first met, in the order
    # dx = -1, 0, 1 then dy = -1, 0, 1 (itself counts first)
    nx, ny = density.shape
    target = np.empty(nx * ny, dtype=np.int64)
    for i in range(nx):
        for j in range(ny):
            best = density[i, j]
            t = i * ny + j
            for dx in range(-1, 2):
                for dy in range(-1, 2):
                    if dx == 0 and dy == 0:
                        continue
                    a = i + dx
                    b = j + dy
                    if 0 <= a < nx and 0 <= b < ny and density[a, b] > best:
                        best = density[a, b]
                        t = a * ny + b
            target[i * ny + j] = t
    return target


@kernel(args=[("i8", 1)], returns=("i8", 1), group="placement")
def _follow_to_maxima(target):
    # each bin's maximum, following the pointers; a path ends early at a bin already
    # settled, and every bin on it is settled with it (each bin is walked once)
    n = target.size
    labels = np.full(n, -1, dtype=np.int64)
    path = np.empty(n, dtype=np.int64)
    for i in range(n):
        depth = 0
        k = i
        while labels[k] < 0 and target[k] != k:
            path[depth] = k
            depth += 1
            k = target[k]
        top = labels[k] if labels[k] >= 0 else k
        labels[k] = top
        for j in range(depth):
            labels[path[j]] = top
    return labels


def ascent_basins(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steepest-ascent basins of a 2-D density (see :func:`.density.basins_2d`).

    Returns
    -------
    labels : numpy.ndarray
        int64, same shape: the flat index of each bin's local maximum.
    maxima : numpy.ndarray
        Flat indices of the local maxima.
    """
    d = np.ascontiguousarray(density, dtype=np.float64)
    target = _ascent_targets(d)
    labels = _follow_to_maxima(target)
    maxima = np.flatnonzero(target == np.arange(target.size))
    return labels.reshape(d.shape), maxima


@kernel(args=[("f8", 2)], returns=("i8", 1), group="placement")
def _monotone_chain(points):
    # points sorted by x then y, distinct; returns hull indices, counter-clockwise
    n = points.shape[0]
    hull = np.empty(2 * n, dtype=np.int64)
    k = 0
    for step in range(2):
        start = k
        for s in range(n):
            i = s if step == 0 else n - 1 - s
            while k >= start + 2:
                o = hull[k - 2]
                a = hull[k - 1]
                cross = ((points[a, 0] - points[o, 0]) * (points[i, 1] - points[o, 1])
                         - (points[a, 1] - points[o, 1]) * (points[i, 0] - points[o, 0]))
                if cross > 0.0:
                    break
                k -= 1
            hull[k] = i
            k += 1
        k -= 1  # the last point of each chain starts the next
    return hull[:k].copy()


def convex_hull_indices(sorted_points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull's vertices, counter-clockwise (Andrew's monotone chain).

    Parameters
    ----------
    sorted_points : numpy.ndarray
        (n, 2) distinct points sorted by x, then y (as ``np.unique(..., axis=0)`` gives).
    """
    return _monotone_chain(np.ascontiguousarray(sorted_points, dtype=np.float64))
