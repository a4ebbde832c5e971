"""Scale transforms as compiled scalar kernels, lowered from FlowKit's transform objects.

Every Gating-ML 2.0 transform and the two FlowJo 10 ones that FlowKit reads from a workspace
are lowered to a kind code and a parameter vector (``TransformSpec``) that the gating kernel
evaluates one value at a time. Each kernel repeats FlowKit's own arithmetic (same formula,
same order of operations) so that results agree with FlowKit to the last bit or within a
few units in the last place; logicle and hyperlog solve the same equation with FlowKit's C code's
initial guesses, tolerances and iteration limits (Moore & Parks 2012; Bagwell 2005), and
give its numbers bit for bit — its -1 where it finds no root included.

Only polygon and ellipsoid gates need transformed values per event: range, rectangle and
quadrant thresholds are mapped back to untransformed values once, with FlowKit's own
transform (see :mod:`immunoprofile.engine.thresholds`), so those comparisons are exact.

The kernels (:mod:`.transform_kernels`) use plain ``numba.njit`` (no fastmath): fused
multiply-adds or reassociation would change rounding and so event membership at gate
edges. This module, which only lowers, does not import Numba.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# The kind codes and parameter slots are the kernels' too: they live in opcodes.
from .opcodes import (
    ASINH,
    DOMAIN,
    HYPERLOG,
    IDENTITY,
    LINEAR,
    LOG,
    LOGICLE,
    N_PARAMS,
    TAYLOR_LENGTH,
    TAYLOR_START,
    WSP_BIEX,
    WSP_LOG,
)


class UnsupportedTransform(Exception):
    """A transform the engine cannot evaluate exactly as FlowKit does."""


@dataclass
class TransformSpec:
    """One transform lowered to flat data.

    Attributes
    ----------
    kind : int
        One of the kind codes of this module.
    params : numpy.ndarray
        float64[N_PARAMS].
    lut_x, lut_y : numpy.ndarray
        Lookup table (FlowJo biex only; empty otherwise), ``lut_x`` ascending.
    reference : object
        The FlowKit transform (None for identity), used for exact threshold mapping.
    domain : float
        Magnitudes up to which FlowKit's transform behaves (no root-finding failures), so
        that range bounds can be mapped back through it.
    """

    kind: int
    params: np.ndarray
    lut_x: np.ndarray = field(default_factory=lambda: np.empty(0))
    lut_y: np.ndarray = field(default_factory=lambda: np.empty(0))
    reference: object = None
    domain: float = DOMAIN

    def apply_reference(self, values: np.ndarray) -> np.ndarray:
        """Transform ``values`` with FlowKit itself (a column, as FlowKit gates it)."""
        column = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        if self.reference is None:
            return column[:, 0].copy()
        return np.asarray(self.reference.apply(column), dtype=np.float64).reshape(-1)


def identity_spec() -> TransformSpec:
    """The spec of an untransformed dimension."""
    return TransformSpec(IDENTITY, np.zeros(N_PARAMS))


def _solve_logicle_d(b: float, w: float) -> float:
    """Root ``d`` of ``2 (ln d - ln b) + w (b + d) = 0`` on (0, b] (Moore & Parks 2012)."""
    if w == 0:
        return b
    from scipy import optimize  # only when lowering a logicle (scipy is slow to import)

    def equation(d):
        return 2.0 * (math.log(d) - math.log(b)) + w * (b + d)

    d = optimize.brentq(equation, 1e-300, b, xtol=1e-300, rtol=4 * np.finfo(float).eps,
                        maxiter=500)
    for _ in range(3):  # Newton polish to the last bit
        step = equation(d) / (2.0 / d + w)
        if step == 0 or not np.isfinite(step):
            break
        d -= step
    return d


def _scale_geometry(name: str, t: float, w_: float, m: float, a_: float,
                    zero_width: bool) -> tuple[float, float, float, float]:
    """(w, x1, x0, b) of a logicle-type scale, as flowutils computes them (Gating-ML 2.0)."""
    if not (t > 0 and m > 0 and (w_ >= 0 if zero_width else w_ > 0) and 2 * w_ <= m
            and -w_ <= a_ <= m - 2 * w_):
        raise UnsupportedTransform(f"{name} parameters out of range (T={t}, W={w_}, "
                                   f"M={m}, A={a_})")
    w = w_ / (m + a_)
    x2 = a_ / (m + a_)
    return w, x2 + w, x2 + 2 * w, (m + a_) * math.log(10.0)


def _logicle_params(t: float, w_: float, m: float, a_: float) -> np.ndarray:
    w, x1, x0, b = _scale_geometry("logicle", t, w_, m, a_, zero_width=True)
    p = np.zeros(N_PARAMS)
    d = _solve_logicle_d(b, w)
    c_a = math.exp(x0 * (b + d))
    mf_a = math.exp(b * x1) - c_a / math.exp(d * x1)
    a = t / ((math.exp(b) - mf_a) - c_a / math.exp(d))
    c = c_a * a
    f = -mf_a * a
    p[:8] = (a, b, c, d, f, x1, x1 + w / 4, 0.0)
    pos = a * math.exp(b * x1)
    neg = -c / math.exp(d * x1)
    for i in range(TAYLOR_LENGTH):
        pos *= b / (i + 1)
        neg *= -d / (i + 1)
        p[TAYLOR_START + i] = pos + neg
    p[TAYLOR_START + 1] = 0.0  # exact by the logicle condition
    return p


def _hyperlog_params(t: float, w_: float, m: float, a_: float) -> np.ndarray:
    w, x1, x0, b = _scale_geometry("hyperlog", t, w_, m, a_, zero_width=False)
    p = np.zeros(N_PARAMS)
    c_a = math.exp(b * x0) / w
    f_a = math.exp(b * x1) + c_a * x1
    a = t / ((math.exp(b) + c_a) - f_a)
    c = c_a * a
    f = f_a * a
    x_taylor = x1 + w / 4
    p[:7] = (a, b, c, 0.0, f, x1, x_taylor)
    coef = a * math.exp(b * x1)
    for i in range(TAYLOR_LENGTH):
        coef *= b / (i + 1)
        p[TAYLOR_START + i] = coef
    p[TAYLOR_START] += c
    # flowutils' bound of its linear initial guess ("inverse"), from x0 as it computes it
    p[9] = 1.0  # the series keeps its second coefficient (see biexponential_series)
    negative = x0 < x1
    x0_used = 2 * x1 - x0 if negative else x0
    if x0_used < x_taylor:
        from .transform_kernels import biexponential_series

        inverse = float(biexponential_series(p, x0_used))
    else:
        inverse = a * math.exp(b * x0_used) + c * x0_used
    p[7] = -inverse if negative else inverse
    p[8] = w
    return p


def _with_domain(spec: TransformSpec) -> TransformSpec:
    """Set ``spec.domain`` below where FlowKit's root-finding starts to fail.

    flowutils' logicle and hyperlog return -1 where their iteration does not converge:
    logicle only beyond ~1e159, hyperlog sporadically from ~1e12 up for some parameters.
    Those failures are FlowKit's answers and the compiled kernels reproduce them bit for
    bit, but a range bound cannot be mapped through a function that jumps to -1 here and
    there; the mapped domain stops a hundredfold below the first failure found on a dense
    grid, and the kernel transforms anything beyond.
    """
    grid = np.logspace(0.0, 15.06, 150_001)
    values = np.concatenate([grid, -grid])
    with np.errstate(all="ignore"):
        out = spec.apply_reference(values)
    failed = np.abs(values[out == -1.0])
    if failed.size:
        spec.domain = float(min(DOMAIN, failed.min() / 100.0))
    return spec


def lower_transform(xform) -> TransformSpec:
    """Lower one FlowKit transform object to a :class:`TransformSpec`.

    Raises
    ------
    UnsupportedTransform
        A transform type the engine does not evaluate (FlowKit is used instead).
    """
    if xform is None:
        return identity_spec()
    from flowkit import transforms as fk_transforms

    p = np.zeros(N_PARAMS)
    # Exact type checks: a subclass could change apply().
    kind_of = type(xform)
    if kind_of is fk_transforms.LinearTransform:
        p[0], p[1] = float(xform.param_t), float(xform.param_a)
        return TransformSpec(LINEAR, p, reference=xform)
    if kind_of is fk_transforms.LogTransform:
        p[0], p[1] = float(xform.param_t), float(xform.param_m)
        return TransformSpec(LOG, p, reference=xform)
    if kind_of is fk_transforms.AsinhTransform:
        t, m, a = float(xform.param_t), float(xform.param_m), float(xform.param_a)
        # flowutils.transforms.asinh computes these with numpy, in this order.
        p[0] = np.sinh(m * np.log(10)) / t
        p[1] = a * np.log(10)
        p[2] = (m + a) * np.log(10)
        return TransformSpec(ASINH, p, reference=xform)
    if kind_of is fk_transforms.LogicleTransform:
        p = _logicle_params(float(xform.param_t), float(xform.param_w),
                            float(xform.param_m), float(xform.param_a))
        return _with_domain(TransformSpec(LOGICLE, p, reference=xform))
    if kind_of is fk_transforms.HyperlogTransform:
        p = _hyperlog_params(float(xform.param_t), float(xform.param_w),
                             float(xform.param_m), float(xform.param_a))
        return _with_domain(TransformSpec(HYPERLOG, p, reference=xform))
    if kind_of is fk_transforms.WSPLogTransform:
        offset, decades = float(xform.offset), float(xform.decades)
        p[0], p[1], p[2] = offset, decades, np.log10(offset)
        return TransformSpec(WSP_LOG, p, reference=xform)
    if kind_of is fk_transforms.WSPBiexTransform:
        lut = xform._lut_func  # scipy interp1d over FlowJo's biex table
        x = np.ascontiguousarray(lut.x, dtype=np.float64)
        y = np.ascontiguousarray(np.asarray(lut._y, dtype=np.float64).reshape(-1))
        if x.size < 2 or np.any(np.diff(x) <= 0):
            raise UnsupportedTransform("FlowJo biex table is not strictly increasing")
        p[0] = float(np.asarray(lut._fill_value_below).reshape(-1)[0])
        p[1] = float(np.asarray(lut._fill_value_above).reshape(-1)[0])
        return TransformSpec(WSP_BIEX, p, lut_x=x, lut_y=y, reference=xform)
    raise UnsupportedTransform(f"transform {kind_of.__name__} is not compiled by the engine")


def apply_compiled(spec: TransformSpec, values: np.ndarray) -> np.ndarray:
    """Transform ``values`` with the compiled kernel (float64 out)."""
    from .transform_kernels import transform_array

    return transform_array(spec.kind, spec.params, spec.lut_x, spec.lut_y,
                           np.ascontiguousarray(values, dtype=np.float64).reshape(-1))
