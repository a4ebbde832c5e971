"""The transforms as compiled scalar kernels (see :mod:`.transforms` for what each
repeats of FlowKit's arithmetic, and why).

Kept apart from the lowering code so that only what gates events imports Numba.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._compile.jit import EXACT_OPTIONS
from .opcodes import (
    ASINH,
    HYPERLOG,
    IDENTITY,
    LINEAR,
    LOG,
    LOGICLE,
    TAYLOR_LENGTH,
    TAYLOR_START,
    WSP_BIEX,
    WSP_LOG,
)


@numba.njit(**EXACT_OPTIONS)
def biexponential_series(p, scale):
    # Taylor series of the (hyper)biexponential around x1, Horner form, summed as flowutils
    # sums it: logicle skips its second coefficient (zero by the logicle condition),
    # hyperlog keeps it (flag in p[9])
    x = scale - p[5]
    total = p[TAYLOR_START + TAYLOR_LENGTH - 1] * x
    for i in range(TAYLOR_LENGTH - 2, 1, -1):
        total = (total + p[TAYLOR_START + i]) * x
    if p[9] != 0.0:  # hyperlog keeps the second coefficient
        return ((total + p[TAYLOR_START + 1]) * x + p[TAYLOR_START]) * x
    return (total * x + p[TAYLOR_START]) * x


@numba.njit(**EXACT_OPTIONS)
def _root_scale(kind, p, value):
    """Logicle or hyperlog of ``value``: Halley's method on the biexponential."""
    a = p[0]
    b = p[1]
    c = p[2]
    d = p[3]
    f = p[4]
    x1 = p[5]
    x_taylor = p[6]
    if value == 0.0:
        return x1
    if not math.isfinite(value):
        return -1.0  # flowutils' C code answers -1 where it finds no root
    negative = value < 0.0
    if negative:
        value = -value
    # flowutils' initial guesses, tolerances and iteration limits (logicle / hyperlog)
    if kind == LOGICLE:
        if value < f:
            x = x1 + value / p[TAYLOR_START]
        else:
            x = math.log(value / a) / b
        tolerance = 3.0 * 2.220446049250313e-16
        if x > 1.0:
            tolerance = 3.0 * x * 2.220446049250313e-16
        iterations = 40
    else:
        inverse = p[7]
        if value < inverse:
            x = x1 + value * p[8] / inverse
        else:
            x = math.log(value / a) / b
        tolerance = 3.0 * 2.220446049250313e-16
        iterations = 10
    for _ in range(iterations):
        ae2bx = a * math.exp(b * x)
        if kind == LOGICLE:
            ce2mdx = c / math.exp(d * x)
            if x < x_taylor:
                y = biexponential_series(p, x) - value
            else:
                y = (ae2bx + f) - (ce2mdx + value)
            abe2bx = b * ae2bx
            cde2mdx = d * ce2mdx
            dy = abe2bx + cde2mdx
            ddy = b * abe2bx - d * cde2mdx
        else:
            if x < x_taylor:
                y = biexponential_series(p, x) - value
            else:
                y = (ae2bx + c * x) - (f + value)
            abe2bx = b * ae2bx
            dy = abe2bx + c
            ddy = b * abe2bx
        delta = y / (dy * (1.0 - y * ddy / (2.0 * dy * dy)))
        x -= delta
        if abs(delta) < tolerance:
            if negative:
                return 2.0 * x1 - x
            return x
    return -1.0


@numba.njit(**EXACT_OPTIONS)
def transform_value(kind, p, lut_x, lut_y, x):
    """Transformed value of one untransformed value ``x`` (see the module docstring)."""
    if kind == IDENTITY:
        return x
    if kind == LINEAR:
        return (x + p[1]) / (p[0] + p[1])
    if kind == LOG:
        return (1.0 / p[1]) * _log10(x / p[0]) + 1.0
    if kind == ASINH:
        return (math.asinh(x * p[0]) + p[1]) / p[2]
    if kind == LOGICLE or kind == HYPERLOG:
        return _root_scale(kind, p, x)
    if kind == WSP_LOG:
        if x < p[0]:
            x = p[0]
        return (1.0 / p[1]) * (_log10(x) - p[2])
    if kind == WSP_BIEX:
        return _interp_linear(lut_x, lut_y, p[0], p[1], x)
    return math.nan


@numba.njit(**EXACT_OPTIONS)
def _log10(x):
    # numpy's log10: -inf at zero, nan below zero
    if x > 0.0:
        return math.log10(x)
    if x == 0.0:
        return -math.inf
    return math.nan


@numba.njit(**EXACT_OPTIONS)
def _interp_linear(xs, ys, below, above, x):
    # scipy.interpolate.interp1d(kind="linear", bounds_error=False), step by step.
    n = xs.shape[0]
    lo_i = 0
    hi_i = n
    while lo_i < hi_i:  # searchsorted(side="left")
        mid = (lo_i + hi_i) >> 1
        if xs[mid] < x:
            lo_i = mid + 1
        else:
            hi_i = mid
    idx = lo_i
    if x != x:
        idx = n  # numpy sorts NaN last
    if idx < 1:
        idx = 1
    if idx > n - 1:
        idx = n - 1
    x_lo = xs[idx - 1]
    x_hi = xs[idx]
    y_lo = ys[idx - 1]
    y_hi = ys[idx]
    slope = (y_hi - y_lo) / (x_hi - x_lo)
    y = slope * (x - x_lo) + y_lo
    if x < xs[0]:
        return below
    if x > xs[n - 1]:
        return above
    return y


@numba.njit(**EXACT_OPTIONS)
def transform_array(kind, p, lut_x, lut_y, values):
    """Transform every value of a 1-D array (tests and the threshold check use it)."""
    out = np.empty(values.shape[0])
    for i in range(values.shape[0]):
        out[i] = transform_value(kind, p, lut_x, lut_y, values[i])
    return out
