"""A program packed into the flat arrays the gating kernels take, by name: the tube-independent
arrays of a program (:func:`program_arrays`: transforms, axes, bracket tables, tests,
gates), the tube's channel arrays (:class:`TubeArrays`, made by :func:`.bind.bind`), and the
two together (:class:`KernelArguments`), whose :meth:`~KernelArguments.flat` is the
kernels' positional order."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import opcodes as K
from .opcodes import DOMAIN, IDENTITY, N_PARAMS
from .program import Program
from .transforms import (
    apply_compiled,
)


class TubeArrays(NamedTuple):
    """The kernel arguments that depend on the tube's layout (:func:`bind`): the channels
    read (``chan_*``: column, bit mask, scale, ``$PnE`` decades and log zero, range, gain)
    and the values computed from them (``val_*``: a channel, a compensated combination
    with its weights ``coef_*``, or a ratio). Field names are the generic kernel's
    parameter names (:func:`immunoprofile.engine.kernel.gate_blocks_serial`)."""

    chan_col: np.ndarray
    chan_mask: np.ndarray
    chan_scale: np.ndarray
    chan_decades: np.ndarray
    chan_log0: np.ndarray
    chan_range: np.ndarray
    chan_gain: np.ndarray
    val_kind: np.ndarray
    val_row: np.ndarray
    val_a: np.ndarray
    val_b: np.ndarray
    val_coef_start: np.ndarray
    coef_chan: np.ndarray
    coef_w: np.ndarray
    val_ratio: np.ndarray


class ProgramArrays(NamedTuple):
    """The tube-independent kernel arguments of a program (:func:`program_arrays`):
    transforms (``xf_*``, lookup tables ``lut_*``), axes, bracket tables, tests
    (``test_*``, mapped intervals ``iv_*``) and gates (``gate_*``: kind, parent, tests,
    axes, polygon vertices and edges, slabs, ellipsoids, Boolean references). Field names
    are the generic kernel's parameter names."""

    xf_kind: np.ndarray
    xf_params: np.ndarray
    xf_lut_start: np.ndarray
    lut_x: np.ndarray
    lut_y: np.ndarray
    axis_value: np.ndarray
    axis_xform: np.ndarray
    bracket_start: np.ndarray
    bracket_pos: np.ndarray
    bracket_neg: np.ndarray
    test_value: np.ndarray
    test_mode: np.ndarray
    test_xform: np.ndarray
    test_has_lo: np.ndarray
    test_tlo: np.ndarray
    test_has_hi: np.ndarray
    test_thi: np.ndarray
    test_ninf: np.ndarray
    test_pinf: np.ndarray
    test_nan: np.ndarray
    test_domain: np.ndarray
    test_iv_start: np.ndarray
    iv_lo: np.ndarray
    iv_hi: np.ndarray
    gate_kind: np.ndarray
    gate_parent: np.ndarray
    gate_complement: np.ndarray
    gate_exact: np.ndarray
    gate_test_start: np.ndarray
    gate_axis_start: np.ndarray
    gate_axes: np.ndarray
    gate_vert_start: np.ndarray
    verts: np.ndarray
    edge_kind: np.ndarray
    edge_lt_test: np.ndarray
    gate_ytest_start: np.ndarray
    ytest: np.ndarray
    gate_dir_start: np.ndarray
    edge_dir: np.ndarray
    gate_band_fast: np.ndarray
    gate_slab_start: np.ndarray
    gate_slab_domain: np.ndarray
    slab_left: np.ndarray
    slab_right: np.ndarray
    gate_ell_start: np.ndarray
    ell_mean: np.ndarray
    gate_inv_start: np.ndarray
    ell_inv: np.ndarray
    ell_dist: np.ndarray
    gate_ref_start: np.ndarray
    ref_gate: np.ndarray
    ref_complement: np.ndarray
    gate_bool_op: np.ndarray


class KernelArguments(NamedTuple):
    """Every array the gating kernels take after the events, by name: ``tube`` then
    ``program``. :meth:`flat` gives them in the kernels' positional order."""

    tube: TubeArrays
    program: ProgramArrays

    def flat(self) -> tuple:
        """The arguments in the kernels' order (``kernel(data, n, *args.flat(), out)``)."""
        return tuple(self.tube) + tuple(self.program)


def bracket_tables(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis, the transform at the bracket table's untransformed grid (see kernel).

    Evaluated by the compiled transforms (Numba): done once, when lowering, and kept in
    the program, so that binding a stored program to a tube needs no Numba.
    """
    start, pos, neg = [], [], []
    offset = 0
    cells = np.arange(K.BRACKET_CELLS + 1, dtype=np.int64)
    grid = (np.int64(K.BRACKET_LOW_BITS) + (cells << np.int64(K.BRACKET_SHIFT))).view(
        np.float64)
    for _, xform in program.axes:
        spec = program.transforms[xform]
        if spec.kind == IDENTITY:
            start.append(-1)
            continue
        with np.errstate(all="ignore"):
            pos.append(apply_compiled(spec, grid))
            neg.append(apply_compiled(spec, -grid))
        start.append(offset)
        offset += grid.size
    if not pos:
        return np.array(start, dtype=np.int64), np.zeros(1), np.zeros(1)
    return np.array(start, dtype=np.int64), np.concatenate(pos), np.concatenate(neg)


def brackets_of(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A program's bracket tables: kept from lowering, or computed now (a program built
    without :func:`lower`)."""
    if program.brackets is None:
        program.brackets = bracket_tables(program)
    return program.brackets


def program_arrays(program: Program) -> ProgramArrays:
    """The tube-independent kernel arrays (transforms, axes, tests, gates)."""
    xf_kind = np.array([t.kind for t in program.transforms], dtype=np.int64)
    xf_params = np.zeros((len(program.transforms), N_PARAMS))
    lut_start = [0]
    lut_x, lut_y = [], []
    for f, spec in enumerate(program.transforms):
        xf_params[f] = spec.params
        lut_x.append(spec.lut_x)
        lut_y.append(spec.lut_y)
        lut_start.append(lut_start[-1] + spec.lut_x.size)
    lut_x_arr = np.concatenate(lut_x) if lut_x else np.empty(0)
    lut_y_arr = np.concatenate(lut_y) if lut_y else np.empty(0)
    axis_value = np.array([a for a, _ in program.axes], dtype=np.int64)
    axis_xform = np.array([x for _, x in program.axes], dtype=np.int64)
    bracket_start, bracket_pos, bracket_neg = brackets_of(program)
    tests = [t for g in program.gates for t in g.tests]
    ytest, g_ytest_start, edge_lt = [], [0], []
    g_dir_start, edge_dir = [], []
    g_band_fast, g_slab_start, g_slab_domain, slab_left, slab_right = [], [], [], [], []
    for g in program.gates:
        # "y >= vertex y" tests that are one interval [L, DOMAIN] let the kernel count
        # bounds instead of running one pass per test
        g_band_fast.append(bool(g.y_tests) and all(
            t.mapped is not None and len(t.mapped.intervals) == 1
            and t.mapped.intervals[0][1] == t.mapped.domain
            and np.isfinite(t.mapped.intervals[0][0])
            for t in g.y_tests))
        g_slab_start.append(len(slab_left))
        g_slab_domain.append(g.slab_domain)
        if g.slab_left is not None:
            slab_left.extend(g.slab_left.ravel().tolist())
            slab_right.extend(g.slab_right.ravel().tolist())
        for test in g.y_tests:
            ytest.append(len(tests))
            tests.append(test)
        g_ytest_start.append(len(ytest))
        for test in g.edge_lt:
            if test is None:
                edge_lt.append(-1)
            else:
                edge_lt.append(len(tests))
                tests.append(test)
        g_dir_start.append(len(edge_dir))
        if g.edge_dirs is not None:
            edge_dir.extend(g.edge_dirs.ravel().tolist())
    t_value = np.array([t.value for t in tests], dtype=np.int64)
    t_mode = np.array([0 if t.mapped is not None else 1 for t in tests], dtype=np.int64)
    t_xform = np.array([t.xform for t in tests], dtype=np.int64)
    t_has_lo = np.array([t.lo is not None for t in tests], dtype=np.bool_)
    t_lo = np.array([t.lo if t.lo is not None else 0.0 for t in tests], dtype=np.float64)
    t_has_hi = np.array([t.hi is not None for t in tests], dtype=np.bool_)
    t_hi = np.array([t.hi if t.hi is not None else 0.0 for t in tests], dtype=np.float64)
    t_ninf = np.array([bool(t.mapped and t.mapped.neg_inf) for t in tests], dtype=np.bool_)
    t_pinf = np.array([bool(t.mapped and t.mapped.pos_inf) for t in tests], dtype=np.bool_)
    t_nan = np.array([bool(t.mapped and t.mapped.nan) for t in tests], dtype=np.bool_)
    t_domain = np.array([t.mapped.domain if t.mapped is not None else DOMAIN for t in tests],
                        dtype=np.float64)
    iv_start, iv_lo, iv_hi = [0], [], []
    for t in tests:
        for lo, hi in (t.mapped.intervals if t.mapped is not None else ()):
            iv_lo.append(lo)
            iv_hi.append(hi)
        iv_start.append(len(iv_lo))
    g_kind = np.array([g.kind for g in program.gates], dtype=np.int64)
    g_parent = np.array([g.parent for g in program.gates], dtype=np.int64)
    g_comp = np.array([g.complement for g in program.gates], dtype=np.bool_)
    g_exact = np.array([g.exact for g in program.gates], dtype=np.bool_)
    g_test_start, g_axis_start, g_axes = [0], [0], []
    g_vert_start, verts, edge_kind = [0], [], []  # edge_lt is parallel to edge_kind
    g_ell_start, ell_mean, g_inv_start, ell_inv, ell_dist = [0], [], [0], [], []
    g_ref_start, ref_gate, ref_comp, g_op = [0], [], [], []
    for g in program.gates:
        g_test_start.append(g_test_start[-1] + len(g.tests))
        g_axes.extend(g.axes)
        g_axis_start.append(len(g_axes))
        if g.vertices is not None:
            verts.append(g.vertices)
            edge_kind.extend(g.edge_kinds)
        g_vert_start.append(g_vert_start[-1] + (len(g.vertices) if g.vertices is not None
                                                else 0))
        if g.mean is not None:
            ell_mean.extend(g.mean.tolist())
            ell_inv.extend(g.inverse.ravel().tolist())
        g_ell_start.append(len(ell_mean))
        g_inv_start.append(len(ell_inv))
        ell_dist.append(g.distance_square)
        for gate_index, complement in g.refs:
            ref_gate.append(gate_index)
            ref_comp.append(complement)
        g_ref_start.append(len(ref_gate))
        g_op.append(g.bool_op)
    i64 = np.int64
    return ProgramArrays(
        xf_kind, xf_params, np.array(lut_start, dtype=i64), lut_x_arr, lut_y_arr,
        axis_value, axis_xform, bracket_start, bracket_pos, bracket_neg,
        t_value, t_mode, t_xform, t_has_lo, t_lo, t_has_hi, t_hi, t_ninf, t_pinf, t_nan,
        t_domain,
        np.array(iv_start, dtype=i64), np.array(iv_lo, dtype=np.float64),
        np.array(iv_hi, dtype=np.float64),
        g_kind, g_parent, g_comp, g_exact, np.array(g_test_start, dtype=i64),
        np.array(g_axis_start, dtype=i64), np.array(g_axes, dtype=i64),
        np.array(g_vert_start, dtype=i64),
        np.concatenate(verts) if verts else np.zeros((0, 2)),
        np.array(edge_kind, dtype=i64), np.array(edge_lt, dtype=i64),
        np.array(g_ytest_start, dtype=i64), np.array(ytest, dtype=i64),
        np.array(g_dir_start, dtype=i64), np.array(edge_dir, dtype=i64),
        np.array(g_band_fast, dtype=np.bool_), np.array(g_slab_start, dtype=i64),
        np.array(g_slab_domain, dtype=np.float64),
        np.array(slab_left, dtype=np.float64), np.array(slab_right, dtype=np.float64),
        np.array(g_ell_start[:-1], dtype=i64), np.array(ell_mean, dtype=np.float64),
        np.array(g_inv_start[:-1], dtype=i64), np.array(ell_inv, dtype=np.float64),
        np.array(ell_dist, dtype=np.float64),
        np.array(g_ref_start, dtype=i64), np.array(ref_gate, dtype=i64),
        np.array(ref_comp, dtype=np.bool_), np.array(g_op, dtype=i64),
    )
