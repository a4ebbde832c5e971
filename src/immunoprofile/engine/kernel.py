"""The gating kernel: one pass over a tube's events, every gate in topological order.

Events are processed in blocks of ``BLOCK`` rows; blocks are independent, so ``prange``
spreads them over threads and counts are summed per block. For each block the kernel

1. decodes the channels the gates need from the file's own data type (time step, ``$PnE``
   log decoding, ``$PnG`` gain and integer bit masks, as FlowIO does);
2. forms the untransformed dimension values: a channel, a compensated channel (dot product
   with the inverse spillover, as FlowKit's ``solve`` computes it) or a ratio;
3. evaluates the gates parent-first, looking only at events their parent holds.

Range, rectangle and quadrant tests compare untransformed values with bounds mapped back
from FlowKit's own transform (:mod:`.thresholds`), so they are exact and need no transform.
Polygons reuse that: an edge's "does the event's y lie between the vertices' y" tests are
such mapped tests, as is the side of a vertical edge; only the side of a sloped edge needs
the transformed point, and even then a bracket of the transformed value (a monotone table,
``bracket_*`` arrays) settles it unless the event lies within a hair of the edge — only then
is the transform evaluated, once per event and axis. Ellipsoids transform their axes.

All arrays are lowered by :mod:`.lower` and packed by :mod:`.pack`; nothing here knows
about FlowKit or files. No fastmath (``EXACT_OPTIONS`` of :mod:`immunoprofile._compile.jit`):
fused multiply-adds or reassociation would move events across gate edges. NumPy's error
model: a ratio over zero is inf or NaN, as in FlowKit, not an exception.
"""

from __future__ import annotations

import math
import types

import numba
import numpy as np

from .._compile.jit import EXACT_OPTIONS
from ..io.events import NO_MASK
from .opcodes import (  # noqa: F401 - re-exported: the kernel's codes
    AND,
    BOOLEAN,
    BRACKET_CELLS,
    BRACKET_HIGH_BITS,
    BRACKET_LOW_BITS,
    BRACKET_SHIFT,
    EDGE_HORIZONTAL,
    EDGE_SLOPED,
    EDGE_VERTICAL,
    ELLIPSOID,
    IDENTITY,
    NOT,
    OR,
    POLYGON,
    RECT,
    VALUE_CHANNEL,
    VALUE_COMBINATION,
    VALUE_RATIO,
)
from .transform_kernels import transform_value

BLOCK = 4096


@numba.njit(inline="always", **EXACT_OPTIONS)
def decode_value(raw_value, mask, scale, decades, log0, value_range, gain):
    if mask != NO_MASK:
        x = float(np.uint64(raw_value) & mask)
    else:
        x = float(raw_value)
    if scale != 1.0:
        x = x * scale
    if decades > 0.0:
        x = (10.0 ** (decades * x / value_range)) * log0
    if gain != 1.0 and gain != 0.0:
        x = x / gain
    return x


@numba.njit(**EXACT_OPTIONS)
def _transform(f, v, xf_kind, xf_params, xf_lut_start, lut_x, lut_y):
    a = xf_lut_start[f]
    b = xf_lut_start[f + 1]
    return transform_value(xf_kind[f], xf_params[f], lut_x[a:b], lut_y[a:b], v)


@numba.njit(**EXACT_OPTIONS)
def _test_general(t, v, test_mode, test_xform, test_has_lo, test_tlo, test_has_hi,
                  test_thi, test_ninf, test_pinf, test_nan, test_domain, test_iv_start, iv_lo,
                  iv_hi, xf_kind, xf_params, xf_lut_start, lut_x, lut_y):
    if test_mode[t] == 0:
        if v >= -test_domain[t] and v <= test_domain[t]:
            for k in range(test_iv_start[t], test_iv_start[t + 1]):
                if v >= iv_lo[k] and v <= iv_hi[k]:
                    return True
            return False
        if v != v:
            return test_nan[t]
        if v == math.inf:
            return test_pinf[t]
        if v == -math.inf:
            return test_ninf[t]
    # beyond the mapped domain, or a test that could not be mapped: transform this value
    u = _transform(test_xform[t], v, xf_kind, xf_params, xf_lut_start, lut_x, lut_y)
    ok = True
    if test_has_lo[t]:
        ok = u >= test_tlo[t]
    if ok and test_has_hi[t]:
        ok = u < test_thi[t]
    return ok


@numba.njit(**EXACT_OPTIONS)
def _test_column(t, vcol, active, out, test_mode, test_xform, test_has_lo, test_tlo,
                 test_has_hi, test_thi, test_ninf, test_pinf, test_nan, test_domain, test_iv_start,
                 iv_lo, iv_hi, xf_kind, xf_params, xf_lut_start, lut_x, lut_y):
    """out[i] = active[i] and test t passes for vcol[i].

    Written without data-dependent branches in the main loops (membership masks are
    random, so branches would be mispredicted); values outside the mapped domain — NaN,
    infinities, |v| > DOMAIN — are rare and fixed up afterwards.
    """
    n = vcol.shape[0]
    s = test_iv_start[t]
    e = test_iv_start[t + 1]
    dom = test_domain[t]
    if test_mode[t] != 0:
        for i in range(n):
            out[i] = False
            if active[i]:
                out[i] = _test_general(t, vcol[i], test_mode, test_xform, test_has_lo,
                                       test_tlo, test_has_hi, test_thi, test_ninf, test_pinf,
                                       test_nan, test_domain, test_iv_start, iv_lo, iv_hi, xf_kind,
                                       xf_params, xf_lut_start, lut_x, lut_y)
        return
    outside = False
    if e - s == 1:
        lo = iv_lo[s]
        hi = iv_hi[s]
        for i in range(n):
            v = vcol[i]
            out[i] = active[i] & (v >= lo) & (v <= hi)
            outside |= not (abs(v) <= dom)
    elif e == s:
        # nothing in the domain passes (an empty range such as [5, 5))
        for i in range(n):
            out[i] = False
            outside |= not (abs(vcol[i]) <= dom)
    else:
        # Several pieces (FlowKit's last-bit wobble near a bound, or its failures for huge
        # values): test the widest branch-free, and the others only for the rare values
        # that fall within their hull.
        main = s
        for k in range(s, e):
            if iv_hi[k] - iv_lo[k] > iv_hi[main] - iv_lo[main]:
                main = k
        lo = iv_lo[main]
        hi = iv_hi[main]
        hull_lo = math.inf
        hull_hi = -math.inf
        for k in range(s, e):
            if k != main:
                hull_lo = min(hull_lo, iv_lo[k])
                hull_hi = max(hull_hi, iv_hi[k])
        near = False
        for i in range(n):
            v = vcol[i]
            out[i] = active[i] & (v >= lo) & (v <= hi)
            near |= (v >= hull_lo) & (v <= hull_hi)
            outside |= not (abs(v) <= dom)
        if near:
            for i in range(n):
                v = vcol[i]
                if active[i] and not out[i] and v >= hull_lo and v <= hull_hi:
                    for k in range(s, e):
                        if v >= iv_lo[k] and v <= iv_hi[k]:
                            out[i] = True
    if outside:
        for i in range(n):
            v = vcol[i]
            if active[i] and not (abs(v) <= dom):
                out[i] = _test_general(t, v, test_mode, test_xform, test_has_lo, test_tlo,
                                       test_has_hi, test_thi, test_ninf, test_pinf, test_nan,
                                       test_domain,
                                       test_iv_start, iv_lo, iv_hi, xf_kind, xf_params,
                                       xf_lut_start, lut_x, lut_y)


@numba.njit(inline="always", **EXACT_OPTIONS)
def _is_left(ax, ay, bx, by, px, py):
    # flowutils' point_is_left, same operations in the same order
    return (bx - ax) * (py - ay) - (px - ax) * (by - ay)


@numba.njit(**EXACT_OPTIONS)
def _winding_odd(px, py, verts, start, stop):
    # flowutils' points_in_polygon: outside the vertices' bounding box (inclusive, found
    # as its C code finds it) a point is outside; else the winding number (Sunday),
    # inside when odd.
    n = stop - start
    min_x = verts[start, 0]
    max_x = min_x
    min_y = verts[start, 1]
    max_y = min_y
    for k in range(1, n):
        vx = verts[start + k, 0]
        vy = verts[start + k, 1]
        if vx < min_x:
            min_x = vx
        elif vx > max_x:
            max_x = vx
        if vy < min_y:
            min_y = vy
        elif vy > max_y:
            max_y = vy
    if px < min_x or px > max_x or py < min_y or py > max_y:
        return False
    wind = 0
    for k in range(n):
        ax = verts[start + k, 0]
        ay = verts[start + k, 1]
        j = start if k >= n - 1 else start + k + 1
        bx = verts[j, 0]
        by = verts[j, 1]
        if ay <= py:
            if py < by:
                if _is_left(ax, ay, bx, by, px, py) > 0:
                    wind += 1
        else:
            if by <= py:
                if _is_left(ax, ay, bx, by, px, py) < 0:
                    wind -= 1
    return wind % 2 != 0


#: Cells per axis of a polygon's occupancy grid (see :func:`_polygon_grids`).
GRID = 128
#: Polygons with fewer vertices are tested edge by edge: their few long edges would make
#: most cells mixed, and the edge loop is already short.
GRID_MIN_VERTICES = 8
CELL_OUTSIDE = 0
CELL_INSIDE = 1
CELL_MIXED = 2


@numba.njit(inline="always", **EXACT_OPTIONS)
def _untransformed_crossing(ax, ay, bx, by, px, py):
    # FlowKit's winding rule for one edge a->b and an untransformed point: +1 when the
    # point is left of an upward edge whose y span holds it, -1 right of a downward one
    value = (bx - ax) * (py - ay) - (px - ax) * (by - ay)
    up = (ay <= py) & (py < by) & (value > 0)
    down = (ay > py) & (by <= py) & (value < 0)
    return np.int64(up) - np.int64(down)


@numba.njit(inline="always", **EXACT_OPTIONS)
def _untransformed_inside(px, py, verts, v0, nv):
    # one event against every edge (the untransformed branch of _polygon_column)
    wind = 0
    for k in range(nv):
        kb = 0 if k == nv - 1 else k + 1
        wind += _untransformed_crossing(verts[v0 + k, 0], verts[v0 + k, 1],
                                        verts[v0 + kb, 0], verts[v0 + kb, 1], px, py)
    return (wind & 1) == 1


@numba.njit(**EXACT_OPTIONS)
def _polygon_grids(gate_kind, gate_exact, gate_axis_start, gate_axes, axis_xform, xf_kind,
                   gate_vert_start, verts):
    """An occupancy grid per polygon on untransformed axes (the gates adaptive gating
    places): :data:`GRID` × :data:`GRID` cells over the vertices' bounding box, each
    outside, inside or mixed, so that an event in a settled cell needs one lookup instead of
    a test against every edge. Returns ``(cells, frame, grid_of)``: ``grid_of[g]`` is the
    gate's grid in ``cells`` and ``frame`` (x0, y0, x scale, y scale), or -1 (no grid).

    Exact, not approximate: a cell is mixed when an edge passes within about two cells of
    it, so a settled cell's events — even one that rounding puts in the neighbouring
    cell — are at least a cell's width from every edge, where the sign of FlowKit's
    is-left product cannot be wrong (its rounding is ~1e-16 of the box, a cell 1/128), and
    they share the winding number of the cell's centre, found with the same arithmetic.
    Mixed cells' events take every edge.
    """
    n_gate = gate_kind.shape[0]
    grid_of = np.full(n_gate, -1, dtype=np.int64)
    n_grid = 0
    for g in range(n_gate):
        if gate_kind[g] != POLYGON or gate_exact[g]:
            continue
        a0 = gate_axis_start[g]
        if xf_kind[axis_xform[gate_axes[a0]]] != IDENTITY or \
                xf_kind[axis_xform[gate_axes[a0 + 1]]] != IDENTITY:
            continue
        if gate_vert_start[g + 1] - gate_vert_start[g] >= GRID_MIN_VERTICES:
            grid_of[g] = n_grid
            n_grid += 1
    cells = np.full((max(n_grid, 1), GRID, GRID), CELL_MIXED, dtype=np.int8)
    frame = np.zeros((max(n_grid, 1), 4))
    for g in range(n_gate):
        k = grid_of[g]
        if k < 0:
            continue
        v0 = gate_vert_start[g]
        nv = gate_vert_start[g + 1] - v0
        x0 = verts[v0, 0]
        x1 = x0
        y0 = verts[v0, 1]
        y1 = y0
        for j in range(1, nv):
            x0 = min(x0, verts[v0 + j, 0])
            x1 = max(x1, verts[v0 + j, 0])
            y0 = min(y0, verts[v0 + j, 1])
            y1 = max(y1, verts[v0 + j, 1])
        wx = x1 - x0
        wy = y1 - y0
        # a box too thin for its magnitude (cells below the coordinates' resolution) or
        # not finite: every event takes the edges.
        # Nor where FlowKit's is-left products could overflow or underflow (a float64
        # file's extreme values): there its answer need not be the same across a cell.
        big = max(abs(x0), abs(x1), abs(y0), abs(y1))
        if not (math.isfinite(wx) and math.isfinite(wy) and big < 1e100
                and wx > 1e-100 and wy > 1e-100
                and wx > 1e-9 * max(abs(x0), abs(x1)) and wy > 1e-9 * max(abs(y0), abs(y1))):
            grid_of[g] = -1
            continue
        sx = GRID / wx
        sy = GRID / wy
        frame[k, 0] = x0
        frame[k, 1] = y0
        frame[k, 2] = sx
        frame[k, 3] = sy
        grid = cells[k]
        for i in range(GRID):
            for j in range(GRID):
                grid[i, j] = CELL_OUTSIDE  # unsettled; CELL_MIXED marks the edges' cells
        # Walk each edge in steps of at most half a cell; every cell within two cells of
        # a step's cell is mixed. The cells an edge passes through lie within one cell of
        # its steps' cells, so a settled cell and its neighbours are a cell or more from
        # every edge.
        mixed = 0
        for e in range(nv):
            eb = 0 if e == nv - 1 else e + 1
            ax = (verts[v0 + e, 0] - x0) * sx
            ay = (verts[v0 + e, 1] - y0) * sy
            bx = (verts[v0 + eb, 0] - x0) * sx
            by = (verts[v0 + eb, 1] - y0) * sy
            steps = int(math.ceil(2.0 * max(abs(bx - ax), abs(by - ay)))) + 1
            for t in range(steps + 1):
                f = t / steps
                c = int(math.floor(ax + f * (bx - ax)))
                r = int(math.floor(ay + f * (by - ay)))
                for rr in range(max(r - 2, 0), min(r + 2, GRID - 1) + 1):
                    for cc in range(max(c - 2, 0), min(c + 2, GRID - 1) + 1):
                        if grid[rr, cc] != CELL_MIXED:
                            grid[rr, cc] = CELL_MIXED
                            mixed += 1
        if 2 * mixed > GRID * GRID:
            grid_of[g] = -1  # most events would take the edges anyway
            continue
        # settled cells between two mixed ones in a row share their centre's answer
        for r in range(GRID):
            state = -1
            cy = y0 + (r + 0.5) / sy
            for c in range(GRID):
                if grid[r, c] == CELL_MIXED:
                    state = -1
                    continue
                if state < 0:
                    cx = x0 + (c + 0.5) / sx
                    inside = _untransformed_inside(cx, cy, verts, v0, nv)
                    state = CELL_INSIDE if inside else CELL_OUTSIDE
                grid[r, c] = state
    return cells, frame, grid_of


@numba.njit(**EXACT_OPTIONS)
def _grid_column(cand, vx_row, vy_row, v0, nv, verts, grid, frame):
    """The untransformed polygon test over a block through the gate's occupancy grid
    (:func:`_polygon_grids`): a lookup per event, every edge only in mixed cells."""
    x0 = frame[0]
    y0 = frame[1]
    sx = frame[2]
    sy = frame[3]
    for i in range(cand.shape[0]):
        if not cand[i]:
            continue
        px = vx_row[i]
        py = vy_row[i]
        fx = (px - x0) * sx
        fy = (py - y0) * sy
        state = CELL_MIXED
        if fx >= 0.0 and fx < GRID and fy >= 0.0 and fy < GRID:  # NaN: not
            state = grid[int(fy), int(fx)]
        if state == CELL_OUTSIDE:
            cand[i] = False
        elif state == CELL_MIXED:
            cand[i] = _untransformed_inside(px, py, verts, v0, nv)


@numba.njit(**EXACT_OPTIONS)
def _polygon_column(cand, vx_row, vy_row, sx, sy, fx, fy, v0, nv, verts, edge_kind,
                    edge_lt_test, ytest, y0, y1, edge_dir, d0, band_fast, slab_left,
                    slab_right, s0, slab_domain, band, wind, ge, lt, pxl, pxh, pyl, pyh,
                    px_exact, py_exact, have_exact, have_bracket, bracket_pos, bracket_neg,
                    scratch_f, scratch_i, test_mode, test_xform, test_has_lo, test_tlo,
                    test_has_hi, test_thi, test_ninf, test_pinf, test_nan, test_domain,
                    test_iv_start, iv_lo, iv_hi, xf_kind, xf_params, xf_lut_start, lut_x,
                    lut_y, grid, frame, use_grid):
    """FlowKit's winding rule over a block, edge by edge (see the module docstring).

    An event's band — how many distinct vertex y values its y reaches, by exact mapped
    tests — says which edges it crosses and in which direction (``edge_dir``). A vertical
    edge's side is one more mapped test; a sloped edge's side is read from brackets of the
    transformed point unless the event lies within a hair of the edge.
    """
    nb = cand.shape[0]
    ny = y1 - y0
    if sx == -2 and sy == -2:
        # Untransformed axes: FlowKit's own arithmetic on the same values, every edge
        # (through the occupancy grid where the gate has one).
        if use_grid:
            _grid_column(cand, vx_row, vy_row, v0, nv, verts, grid, frame)
            return
        for i in range(nb):
            wind[i] = 0
        for k in range(nv):
            kb = 0 if k == nv - 1 else k + 1
            ax = verts[v0 + k, 0]
            ay = verts[v0 + k, 1]
            bx = verts[v0 + kb, 0]
            by = verts[v0 + kb, 1]
            for i in range(nb):
                wind[i] += _untransformed_crossing(ax, ay, bx, by, vx_row[i], vy_row[i])
        for i in range(nb):
            cand[i] = cand[i] & ((wind[i] & 1) == 1)
        return
    for i in range(nb):
        band[i] = 0
        wind[i] = 0
    if band_fast:
        # every "y >= vertex y" test is one interval [L, DOMAIN]: count the bounds passed
        bounds = np.empty(ny)
        ydom = math.inf
        for j in range(ny):
            bounds[j] = iv_lo[test_iv_start[ytest[y0 + j]]]
            ydom = min(ydom, test_domain[ytest[y0 + j]])
        outside = False
        for i in range(nb):
            outside |= not (abs(vy_row[i]) <= ydom)
        for j in range(ny):
            bound = bounds[j]
            for i in range(nb):
                band[i] += vy_row[i] >= bound
        if outside:
            for i in range(nb):
                v = vy_row[i]
                if cand[i] and not (abs(v) <= ydom):
                    count = 0
                    for j in range(ny):
                        count += _test_general(ytest[y0 + j], v, test_mode, test_xform,
                                               test_has_lo, test_tlo, test_has_hi, test_thi,
                                               test_ninf, test_pinf, test_nan, test_domain,
                                               test_iv_start,
                                               iv_lo, iv_hi, xf_kind, xf_params,
                                               xf_lut_start, lut_x, lut_y)
                    band[i] = count
    else:
        for j in range(ny):
            _test_column(ytest[y0 + j], vy_row, cand, ge[j], test_mode, test_xform,
                         test_has_lo, test_tlo, test_has_hi, test_thi, test_ninf, test_pinf,
                         test_nan, test_domain, test_iv_start, iv_lo, iv_hi, xf_kind, xf_params,
                         xf_lut_start, lut_x, lut_y)
            row = ge[j]
            for i in range(nb):
                band[i] += row[i]
    for i in range(nb):
        have_exact[i] = False
        have_bracket[i] = False
    for k in range(nv):
        kind = edge_kind[v0 + k]
        if kind == EDGE_HORIZONTAL:
            continue
        dirs = edge_dir[d0 + k * (ny + 1): d0 + (k + 1) * (ny + 1)]
        if kind == EDGE_VERTICAL:
            left = lt[k]
            _test_column(edge_lt_test[v0 + k], vx_row, cand, left, test_mode, test_xform,
                         test_has_lo, test_tlo, test_has_hi, test_thi, test_ninf, test_pinf,
                         test_nan, test_domain, test_iv_start, iv_lo, iv_hi, xf_kind, xf_params,
                         xf_lut_start, lut_x, lut_y)
            for i in range(nb):
                wind[i] += dirs[band[i]] * left[i]
            continue
        # A sloped edge, one pass (events outside its bands skip it: predictable).
        # FlowKit counts it (+1 up, -1 down) exactly when the point lies left of it.
        slabs = slab_left[s0 + k * (ny + 1): s0 + (k + 1) * (ny + 1)]
        clears = slab_right[s0 + k * (ny + 1): s0 + (k + 1) * (ny + 1)]
        kb = 0 if k == nv - 1 else k + 1
        ax = verts[v0 + k, 0]
        ay = verts[v0 + k, 1]
        bx = verts[v0 + kb, 0]
        by = verts[v0 + kb, 1]
        dx = bx - ax
        dy = by - ay
        for i in range(nb):
            d = dirs[band[i]] * cand[i]
            if d == 0:
                continue
            # Within a band the edge spans a narrow range of x: an event clearly left of
            # it counts, one clearly right does not, by exact mapped bounds on the
            # untransformed x (compiler: slab bounds).
            xr = vx_row[i]
            if xr <= slabs[band[i]] and xr >= -slab_domain:
                wind[i] += d
                continue
            if xr >= clears[band[i]] and xr <= slab_domain:
                continue
            if not have_bracket[i]:
                # bounds on the transformed point from the axes' tables (inline: a call
                # passing arrays costs more than this whole computation)
                have_bracket[i] = True
                for axis in range(2):
                    v = xr if axis == 0 else vy_row[i]
                    s = sx if axis == 0 else sy
                    if s == -2:
                        lo = v
                        hi = v
                    elif s >= 0 and abs(v) < 2.0**24:
                        if abs(v) < 2.0**-10:
                            lo = bracket_neg[s]
                            hi = bracket_pos[s]
                        else:
                            scratch_f[0] = abs(v)
                            cell = s + ((scratch_i[0] - BRACKET_LOW_BITS) >> BRACKET_SHIFT)
                            if v >= 0.0:
                                lo = bracket_pos[cell]
                                hi = bracket_pos[cell + 1]
                            else:
                                lo = bracket_neg[cell + 1]
                                hi = bracket_neg[cell]
                        if lo > hi:
                            lo, hi = hi, lo
                        if math.isfinite(lo) and math.isfinite(hi):
                            # exact table values; widen for FlowKit's last-bit wobble
                            lo = lo - 1e-12 * (1.0 + abs(lo))
                            hi = hi + 1e-12 * (1.0 + abs(hi))
                        else:
                            lo = math.nan
                            hi = math.nan
                    else:
                        lo = math.nan
                        hi = math.nan
                    if axis == 0:
                        pxl[i] = lo
                        pxh[i] = hi
                    else:
                        pyl[i] = lo
                        pyh[i] = hi
            # is_left is affine in (px, py): its range over the bracket box is the sum of
            # the ranges of its two terms (the margin covers the rounding of these sums)
            t1 = dx * (pyl[i] - ay)
            t2 = dx * (pyh[i] - ay)
            t3 = (pxl[i] - ax) * dy
            t4 = (pxh[i] - ax) * dy
            low = min(t1, t2) - max(t3, t4)
            high = max(t1, t2) - min(t3, t4)
            margin = 1e-9 * (abs(t1) + abs(t2) + abs(t3) + abs(t4)) + 1e-300
            if d > 0 and low > margin:
                wind[i] += 1
            elif d < 0 and high < -margin:
                wind[i] -= 1
            elif not ((d > 0 and high < -margin) or (d < 0 and low > margin)):
                # unsettled (within a hair of the edge, or no bracket: NaN bounds):
                # the transformed point itself, as FlowKit computes it
                if not have_exact[i]:
                    have_exact[i] = True
                    px = vx_row[i]
                    if sx != -2:
                        px = _transform(fx, px, xf_kind, xf_params, xf_lut_start, lut_x,
                                        lut_y)
                    py = vy_row[i]
                    if sy != -2:
                        py = _transform(fy, py, xf_kind, xf_params, xf_lut_start, lut_x,
                                        lut_y)
                    px_exact[i] = px
                    py_exact[i] = py
                value = _is_left(ax, ay, bx, by, px_exact[i], py_exact[i])
                if d > 0 and value > 0:
                    wind[i] += 1
                elif d < 0 and value < 0:
                    wind[i] -= 1
    for i in range(nb):
        cand[i] = cand[i] & ((wind[i] & 1) == 1)


def _gate_blocks(data, n_events,
                 chan_col, chan_mask, chan_scale, chan_decades, chan_log0, chan_range,
                 chan_gain,
                 val_kind, val_row, val_a, val_b, val_coef_start, coef_chan, coef_w, val_ratio,
                 xf_kind, xf_params, xf_lut_start, lut_x, lut_y,
                 axis_value, axis_xform, bracket_start, bracket_pos, bracket_neg,
                 test_value, test_mode, test_xform, test_has_lo, test_tlo, test_has_hi,
                 test_thi, test_ninf, test_pinf, test_nan, test_domain, test_iv_start, iv_lo, iv_hi,
                 gate_kind, gate_parent, gate_complement, gate_exact, gate_test_start,
                 gate_axis_start, gate_axes, gate_vert_start, verts, edge_kind, edge_lt_test,
                 gate_ytest_start, ytest, gate_dir_start, edge_dir, gate_band_fast,
                 gate_slab_start, gate_slab_domain, slab_left, slab_right,
                 gate_ell_start, ell_mean, gate_inv_start, ell_inv, ell_dist,
                 gate_ref_start, ref_gate, ref_complement, gate_bool_op,
                 out_bits):
    n_chan = chan_col.shape[0]
    n_val = val_kind.shape[0]  # values live in rows val_row[k] of the block's table
    n_axis = axis_value.shape[0]
    n_gate = gate_kind.shape[0]
    max_vert = 1
    for g in range(n_gate):
        max_vert = max(max_vert, gate_vert_start[g + 1] - gate_vert_start[g])
    n_blocks = (n_events + BLOCK - 1) // BLOCK
    counts = np.zeros((n_blocks, n_gate), dtype=np.int64)
    grid_cells, grid_frame, grid_of = _polygon_grids(
        gate_kind, gate_exact, gate_axis_start, gate_axes, axis_xform, xf_kind,
        gate_vert_start, verts)
    write_bits = out_bits.shape[0] > 0
    for blk in numba.prange(n_blocks):
        start = blk * BLOCK
        stop = min(start + BLOCK, n_events)
        nb = stop - start
        # rows 0..n_chan-1: decoded channels; then one row per derived value
        vals = np.empty((n_chan + n_val, nb))
        tv = np.empty((n_axis, nb))
        tdone = np.zeros((n_axis, nb), dtype=np.bool_)
        member = np.zeros((n_gate, nb), dtype=np.bool_)
        everyone = np.ones(nb, dtype=np.bool_)
        cand = np.empty(nb, dtype=np.bool_)
        cand2 = np.empty(nb, dtype=np.bool_)
        ge = np.empty((max_vert, nb), dtype=np.bool_)
        lt = np.empty((max_vert, nb), dtype=np.bool_)
        band = np.empty(nb, dtype=np.int64)
        wind = np.empty(nb, dtype=np.int64)
        pxl = np.empty(nb)
        pxh = np.empty(nb)
        pyl = np.empty(nb)
        pyh = np.empty(nb)
        px_exact = np.empty(nb)
        py_exact = np.empty(nb)
        have_exact = np.empty(nb, dtype=np.bool_)
        have_bracket = np.empty(nb, dtype=np.bool_)
        scratch_f = np.empty(1)
        scratch_i = scratch_f.view(np.int64)
        for c in range(n_chan):
            col = chan_col[c]
            mask = chan_mask[c]
            scale = chan_scale[c]
            decades = chan_decades[c]
            log0 = chan_log0[c]
            value_range = chan_range[c]
            gain = chan_gain[c]
            if mask == NO_MASK and scale == 1.0 and not decades > 0.0 and (gain == 1.0
                                                                       or gain == 0.0):
                for i in range(nb):
                    vals[c, i] = float(data[start + i, col])
            else:
                for i in range(nb):
                    vals[c, i] = decode_value(data[start + i, col], mask, scale, decades, log0,
                                         value_range, gain)
        for k in range(n_val):
            kind = val_kind[k]
            row = n_chan + k
            if kind == VALUE_COMBINATION:
                # sum_j x_j * w_j, left to right, per event (FlowKit: X @ inv(S))
                j0 = val_coef_start[k]
                terms = val_coef_start[k + 1] - j0
                if terms == 3:
                    r0 = vals[coef_chan[j0]]
                    r1 = vals[coef_chan[j0 + 1]]
                    r2 = vals[coef_chan[j0 + 2]]
                    w0 = coef_w[j0]
                    w1 = coef_w[j0 + 1]
                    w2 = coef_w[j0 + 2]
                    out = vals[row]
                    for i in range(nb):
                        out[i] = r0[i] * w0 + r1[i] * w1 + r2[i] * w2
                elif terms == 2:
                    r0 = vals[coef_chan[j0]]
                    r1 = vals[coef_chan[j0 + 1]]
                    w0 = coef_w[j0]
                    w1 = coef_w[j0 + 1]
                    out = vals[row]
                    for i in range(nb):
                        out[i] = r0[i] * w0 + r1[i] * w1
                else:
                    for i in range(nb):
                        vals[row, i] = 0.0
                    for j in range(j0, val_coef_start[k + 1]):
                        src = coef_chan[j]
                        w = coef_w[j]
                        for i in range(nb):
                            vals[row, i] += vals[src, i] * w
            elif kind == VALUE_RATIO:
                num = val_a[k]
                den = val_b[k]
                ra = val_ratio[k, 0]
                rb = val_ratio[k, 1]
                rc = val_ratio[k, 2]
                for i in range(nb):
                    vals[row, i] = ra * ((vals[num, i] - rb) / (vals[den, i] - rc))
        for g in range(n_gate):
            parent = gate_parent[g]
            kind = gate_kind[g]
            complement = gate_complement[g]
            parent_ok = member[parent] if parent >= 0 else everyone
            if kind == BOOLEAN:
                r0 = gate_ref_start[g]
                r1 = gate_ref_start[g + 1]
                op = gate_bool_op[g]
                for i in range(nb):
                    if not parent_ok[i]:
                        continue
                    if op == NOT:
                        result = not (member[ref_gate[r0], i] != ref_complement[r0])
                    elif op == AND:
                        result = True
                        for r in range(r0, r1):
                            if not (member[ref_gate[r], i] != ref_complement[r]):
                                result = False
                                break
                    else:
                        result = False
                        for r in range(r0, r1):
                            if member[ref_gate[r], i] != ref_complement[r]:
                                result = True
                                break
                    member[g, i] = result
                continue
            # Range tests (the rectangle itself, or a shape's bounding box), column-wise.
            t0 = gate_test_start[g]
            t1 = gate_test_start[g + 1]
            if t1 == t0:
                for i in range(nb):
                    cand[i] = parent_ok[i]
            else:
                source = parent_ok
                for t in range(t0, t1):
                    target = cand if (t - t0) % 2 == 0 else cand2
                    _test_column(t, vals[val_row[test_value[t]]], source, target, test_mode,
                                 test_xform, test_has_lo, test_tlo, test_has_hi, test_thi,
                                 test_ninf, test_pinf, test_nan, test_domain, test_iv_start,
                                 iv_lo, iv_hi,
                                 xf_kind, xf_params, xf_lut_start, lut_x, lut_y)
                    source = target
                if (t1 - t0) % 2 == 0:
                    cand, cand2 = cand2, cand
            if kind == POLYGON:
                a0 = gate_axis_start[g]
                ux = gate_axes[a0]
                uy = gate_axes[a0 + 1]
                v0 = gate_vert_start[g]
                v1 = gate_vert_start[g + 1]
                nv = v1 - v0
                vx_row = vals[val_row[axis_value[ux]]]
                vy_row = vals[val_row[axis_value[uy]]]
                fx = axis_xform[ux]
                fy = axis_xform[uy]
                # bracket table start per axis: -2 untransformed (exact), -1 none
                sx = -2 if xf_kind[fx] == IDENTITY else bracket_start[ux]
                sy = -2 if xf_kind[fy] == IDENTITY else bracket_start[uy]
                if gate_exact[g]:
                    for i in range(nb):
                        if cand[i]:
                            px = vx_row[i]
                            if sx != -2:
                                px = _transform(fx, px, xf_kind, xf_params, xf_lut_start,
                                                lut_x, lut_y)
                            py = vy_row[i]
                            if sy != -2:
                                py = _transform(fy, py, xf_kind, xf_params, xf_lut_start,
                                                lut_x, lut_y)
                            cand[i] = _winding_odd(px, py, verts, v0, v1)
                else:
                    _polygon_column(
                        cand, vx_row, vy_row, sx, sy, fx, fy, v0, nv, verts, edge_kind,
                        edge_lt_test, ytest, gate_ytest_start[g], gate_ytest_start[g + 1],
                        edge_dir, gate_dir_start[g], gate_band_fast[g], slab_left, slab_right,
                        gate_slab_start[g], gate_slab_domain[g], band, wind, ge, lt, pxl, pxh,
                        pyl, pyh, px_exact, py_exact, have_exact, have_bracket, bracket_pos,
                        bracket_neg, scratch_f, scratch_i, test_mode, test_xform, test_has_lo,
                        test_tlo, test_has_hi, test_thi, test_ninf, test_pinf, test_nan,
                        test_domain, test_iv_start, iv_lo, iv_hi, xf_kind, xf_params,
                        xf_lut_start, lut_x, lut_y, grid_cells[max(grid_of[g], 0)],
                        grid_frame[max(grid_of[g], 0)], grid_of[g] >= 0)
            elif kind == ELLIPSOID:
                a0 = gate_axis_start[g]
                dims = gate_axis_start[g + 1] - a0
                e0 = gate_ell_start[g]
                m0 = gate_inv_start[g]
                for i in range(nb):
                    if not cand[i]:
                        continue
                    for d in range(dims):
                        x = gate_axes[a0 + d]
                        if not tdone[x, i]:
                            f = axis_xform[x]
                            u = vals[val_row[axis_value[x]], i]
                            if xf_kind[f] != IDENTITY:
                                u = _transform(f, u, xf_kind, xf_params, xf_lut_start, lut_x,
                                               lut_y)
                            tv[x, i] = u
                            tdone[x, i] = True
                    total = 0.0
                    for col in range(dims):
                        rot = 0.0
                        for row in range(dims):
                            rot += ((tv[gate_axes[a0 + row], i] - ell_mean[e0 + row])
                                    * ell_inv[m0 + row * dims + col])
                        total += rot * (tv[gate_axes[a0 + col], i] - ell_mean[e0 + col])
                    cand[i] = total <= ell_dist[g]
            n_in = 0
            row = member[g]
            for i in range(nb):
                inside = parent_ok[i] & (cand[i] != complement)
                row[i] = inside
                n_in += inside
            counts[blk, g] = n_in
        for g in range(n_gate):
            if gate_kind[g] == BOOLEAN:
                n_in = 0
                for i in range(nb):
                    if member[g, i]:
                        n_in += 1
                counts[blk, g] = n_in
        if write_bits:
            for w in range(out_bits.shape[0]):
                g0 = w * 64
                g1 = min(g0 + 64, n_gate)
                for i in range(nb):
                    word = np.uint64(0)
                    for g in range(g0, g1):
                        if member[g, i]:
                            word |= np.uint64(1) << np.uint64(g - g0)
                    out_bits[w, start + i] = word
    total_counts = np.zeros(n_gate, dtype=np.int64)
    for blk in range(n_blocks):
        for g in range(n_gate):
            total_counts[g] += counts[blk, g]
    return total_counts


def _renamed(func, name: str):
    """A copy of ``func`` under another name: Numba's on-disk cache is keyed by the
    function's qualified name, so the serial and the threaded builds need distinct ones."""
    copy = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__,
                              func.__closure__)
    copy.__qualname__ = name
    return copy


#: Serial and threaded builds of the same kernel (no fastmath: rounding must match FlowKit).
gate_blocks_serial = numba.njit(**EXACT_OPTIONS)(
    _renamed(_gate_blocks, "gate_blocks_serial"))
gate_blocks_parallel = numba.njit(parallel=True, **EXACT_OPTIONS)(
    _renamed(_gate_blocks, "gate_blocks_parallel"))
