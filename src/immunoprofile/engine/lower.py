"""Lowering a FlowKit ``GatingStrategy`` to a :class:`~.program.Program` (plain data).

The strategy is walked once: gates are put in topological order (parents and Boolean
operands first), quadrant gates are split into one rectangle per quadrant, dimensions become
"values" (a channel, a compensated channel or a ratio) and "axes" (a value seen through a
transform), and every range bound is mapped back to untransformed values with FlowKit's own
transform (:mod:`.thresholds`). What depends on the tube — which column holds a channel, the
file's own spillover — is resolved later, per tube, by :func:`.bind.bind`, and the kernels'
arrays are packed by :mod:`.pack`.

Anything FlowKit holds that this module does not lower raises :class:`Unsupported`; the plan
then gates with FlowKit and says so. FlowKit is imported only to lower: a lowered program is
plain data (see :mod:`.program_store`), and binding it needs flowutils alone.
"""

from __future__ import annotations

import numpy as np

from . import opcodes as K
from .opcodes import DOMAIN
from .pack import bracket_tables
from .program import (
    CompMatrix,
    GateKey,
    GateProgram,
    Program,
    Test,
    Unsupported,
    ValueRef,
)
from .thresholds import NonMonotoneTest, RangeTest, range_test
from .transforms import (
    TransformSpec,
    UnsupportedTransform,
    identity_spec,
    lower_transform,
)


def _gate_order(strategy, sample_id) -> list[tuple[GateKey, object]]:
    """Gates in an order where parents and Boolean operands come first.

    Quadrant gates stand in for their quadrants; FlowKit's listing order is kept otherwise.
    """
    from flowkit import gates as fk_gates
    from flowkit.exceptions import QuadrantReferenceError

    entries = []
    for name, path in strategy.get_gate_ids():
        try:
            gate = strategy.get_gate(name, path, sample_id=sample_id)
        except QuadrantReferenceError:
            continue  # compiled with its QuadrantGate
        entries.append(((name, tuple(path)), gate))
    provider: dict[GateKey, GateKey] = {}
    for key, gate in entries:
        provider[key] = key
        if type(gate) is fk_gates.QuadrantGate:
            for q_key in _quadrant_keys(key, gate):
                provider[q_key] = key
    needs: dict[GateKey, set[GateKey]] = {}
    for key, gate in entries:
        wanted = set()
        path = key[1]
        if len(path) > 1:
            wanted.add((path[-1], tuple(path[:-1])))
        if type(gate) is fk_gates.BooleanGate:
            wanted |= {(ref["ref"], tuple(ref["path"])) for ref in gate.gate_refs}
        missing = [w for w in wanted if w not in provider]
        if missing:
            raise Unsupported(f"gate {key[0]!r} refers to {missing[0][0]!r}, which is not "
                              "in the strategy")
        needs[key] = {provider[w] for w in wanted}
    ordered: list[tuple[GateKey, object]] = []
    done: set[GateKey] = set()
    pending = list(entries)
    while pending:
        ready = [(k, g) for k, g in pending if needs[k] <= done]
        if not ready:
            raise Unsupported("the gate hierarchy has a cycle")
        ordered.extend(ready)
        done |= {k for k, _ in ready}
        pending = [(k, g) for k, g in pending if k not in done]
    return ordered


def _quadrant_keys(key: GateKey, gate) -> list[GateKey]:
    name, path = key
    return [(q_id, path + (name,)) for q_id in gate.quadrants]


class Lowering:
    def __init__(self, strategy, sample_id):
        self.strategy = strategy
        self.sample_id = sample_id
        self.values: list[ValueRef] = []
        self.transforms: list[TransformSpec] = [identity_spec()]
        self._xform_index: dict[str | None, int] = {None: 0}
        self.axes: list[tuple[int, int]] = []
        self.gates: list[GateProgram] = []
        self.index: dict[GateKey, int] = {}
        self.comp_refs: set[str] = set()

    def value(self, ref: ValueRef) -> int:
        if ref not in self.values:
            self.values.append(ref)
        return self.values.index(ref)

    def xform(self, ref: str | None) -> int:
        if ref not in self._xform_index:
            try:
                spec = lower_transform(self.strategy.get_transform(ref))
            except UnsupportedTransform as exc:
                raise Unsupported(str(exc)) from None
            except KeyError:
                raise Unsupported(f"transform {ref!r} is not defined") from None
            self._xform_index[ref] = len(self.transforms)
            self.transforms.append(spec)
        return self._xform_index[ref]

    def axis(self, value: int, xform: int) -> int:
        if (value, xform) not in self.axes:
            self.axes.append((value, xform))
        return self.axes.index((value, xform))

    def dimension(self, dim, comp_ref: str | None) -> tuple[int, int]:
        """(value index, transform index) of one gate dimension."""
        from flowkit._models.dimension import QuadrantDivider, RatioDimension

        if isinstance(dim, RatioDimension):
            ratio = self.strategy.transformations.get(dim.ratio_ref)
            if ratio is None or not hasattr(ratio, "param_a"):
                raise Unsupported(f"ratio transform {dim.ratio_ref!r} is not defined")
            value = self.value(ValueRef(K.VALUE_RATIO, ratio=(
                ratio.dimensions[0], ratio.dimensions[1], float(ratio.param_a),
                float(ratio.param_b), float(ratio.param_c))))
        else:
            label = dim.dimension_ref if isinstance(dim, QuadrantDivider) else dim.id
            value = self.value(ValueRef(K.VALUE_CHANNEL, label=label, comp_ref=comp_ref))
        return value, self.xform(dim.transformation_ref)

    def test(self, value: int, xform: int, lo, hi, hints=()) -> Test:
        try:
            mapped = range_test(self.transforms[xform], lo, hi, hints)
        except NonMonotoneTest:
            mapped = None
        return Test(value, xform, lo, hi, mapped)

    def gate_comp_ref(self, dims) -> str | None:
        refs = {d.compensation_ref for d in dims
                if d.compensation_ref not in (None, "uncompensated")}
        if len(refs) > 1:
            raise Unsupported("a gate mixes compensation matrices (FlowKit refuses this too)")
        ref = refs.pop() if refs else None
        if ref is not None:
            self.comp_refs.add(ref)
        return ref

    def parent_index(self, path: tuple[str, ...]) -> int:
        if len(path) <= 1:
            return -1
        key = (path[-1], tuple(path[:-1]))
        if key not in self.index:
            raise Unsupported(f"parent {path[-1]!r} comes after its child")
        return self.index[key]

    def add(self, program: GateProgram) -> None:
        self.index[program.key] = len(self.gates)
        self.gates.append(program)

    def lower(self, key: GateKey, gate) -> None:
        from flowkit import gates as fk_gates

        parent = self.parent_index(key[1])
        kind_of = type(gate)
        if kind_of is fk_gates.BooleanGate:
            refs = []
            for ref in gate.gate_refs:
                ref_key = (ref["ref"], tuple(ref["path"]))
                if ref_key not in self.index:
                    raise Unsupported(f"Boolean gate {key[0]!r} refers to a later gate")
                refs.append((self.index[ref_key], bool(ref["complement"])))
            op = {"and": K.AND, "or": K.OR, "not": K.NOT}[gate.type]
            self.add(GateProgram(key, K.BOOLEAN, parent, refs=refs, bool_op=op,
                                 gate_type=gate.gate_type))
            return
        if kind_of is fk_gates.QuadrantGate:
            comp = self.gate_comp_ref(gate.dimensions)
            dividers = {d.id: d for d in gate.dimensions}
            for q_key, quadrant in zip(_quadrant_keys(key, gate), gate.quadrants.values(),
                                       strict=True):
                tests = []
                for div_ref in quadrant.divider_refs:
                    value, xform = self.dimension(dividers[div_ref], comp)
                    lo, hi = quadrant.get_divider_range(div_ref)
                    tests.append(self.test(value, xform, lo, hi))
                self.add(GateProgram(q_key, K.RECT, parent, tests=tests,
                                     gate_type=gate.gate_type))
            return
        comp = self.gate_comp_ref(gate.dimensions)
        dims = [self.dimension(d, comp) for d in gate.dimensions]
        if kind_of is fk_gates.RectangleGate:
            tests = [self.test(v, x, getattr(d, "min", None), getattr(d, "max", None))
                     for (v, x), d in zip(dims, gate.dimensions, strict=True)]
            self.add(GateProgram(key, K.RECT, parent, complement=bool(gate.use_complement),
                                 tests=tests, gate_type=gate.gate_type))
        elif kind_of is fk_gates.PolygonGate:
            vertices = np.asarray(gate.vertices, dtype=np.float64)
            if vertices.ndim != 2 or vertices.shape[1] != 2 or len(dims) != 2:
                raise Unsupported(f"polygon {key[0]!r} is not two-dimensional")
            if np.isnan(vertices).any():
                # flowutils' compiled comparisons with NaN are not C's rules to the letter
                raise Unsupported(f"polygon {key[0]!r} has a NaN vertex")
            axes = [self.axis(v, x) for v, x in dims]
            if np.all(np.isfinite(vertices)):
                # flowutils rejects a point outside the vertices' bounding box (inclusive)
                # before winding: that box is the gate's first test, exactly
                tests = [self.test(v, x, float(np.min(vertices[:, j])),
                                   float(np.nextafter(np.max(vertices[:, j]), np.inf)))
                         for j, (v, x) in enumerate(dims)]
            else:
                tests = []  # an infinite vertex: every event is tested exactly (box too)
            program = GateProgram(key, K.POLYGON, parent,
                                  complement=bool(gate.use_complement), tests=tests, axes=axes,
                                  vertices=np.ascontiguousarray(vertices),
                                  gate_type=gate.gate_type)
            self._polygon_edges(program, dims)
            self.add(program)
        elif kind_of is fk_gates.EllipsoidGate:
            mean = np.asarray(gate.coordinates, dtype=np.float64)
            cov = np.asarray(gate.covariance_matrix, dtype=np.float64)
            inverse = np.linalg.inv(cov)  # as flowutils.gating.points_in_ellipsoid does
            distance = float(gate.distance_square)
            axes = [self.axis(v, x) for v, x in dims]
            tests = []
            # Bounding box of {t : t' A t <= D}: only A's symmetric part counts, and the
            # box's half-widths are sqrt(D * diag(inverse of that part)); skipped unless it
            # is positive definite (then every event goes to the exact test).
            shape = (inverse + inverse.T) / 2
            if np.all(np.isfinite(shape)) and np.all(np.linalg.eigvalsh(shape) > 0) \
                    and distance >= 0 and np.all(np.isfinite(mean)):
                half = np.sqrt(distance * np.diag(np.linalg.inv(shape)))
                for j, (v, x) in enumerate(dims):
                    tests.append(self._bounding_test(
                        v, x, np.array([mean[j] - half[j], mean[j] + half[j]])))
            self.add(GateProgram(key, K.ELLIPSOID, parent, tests=tests, axes=axes, mean=mean,
                                 inverse=np.ascontiguousarray(inverse),
                                 distance_square=distance, gate_type=gate.gate_type))
        else:
            raise Unsupported(f"gate type {kind_of.__name__} is not compiled by the engine")

    def _polygon_edges(self, program: GateProgram, dims) -> None:
        """Mapped tests and band tables that let the kernel walk edges untransformed.

        FlowKit's winding rule counts an edge when the point's y lies in [ay, by) (upward)
        or [by, ay) (downward). Which edges qualify depends only on how many distinct
        vertex y values the point's y reaches — its band — so the edges of each band are
        listed here, and the kernel finds an event's band with exact mapped tests.
        """
        (ux, fx), (uy, fy) = dims
        verts = program.vertices
        n = len(verts)
        if not np.all(np.isfinite(verts)):
            # FlowKit's arithmetic on infinite or NaN vertices (NaN sides, uncounted
            # edges) is reproduced only by evaluating its formula on every event
            program.exact = True
            program.edge_kinds = [K.EDGE_HORIZONTAL] * n  # placeholders, never read
            program.edge_lt = [None] * n
            return
        ys = sorted({float(y) for y in verts[:, 1]})
        rank = {y: r for r, y in enumerate(ys)}
        program.y_tests = [self.test(uy, fy, y, None) for y in ys]
        for j in range(n):
            a, b = verts[j], verts[(j + 1) % n]
            if a[1] == b[1]:
                kind = K.EDGE_HORIZONTAL
            elif a[0] == b[0]:
                kind = K.EDGE_VERTICAL
            else:
                kind = K.EDGE_SLOPED
            program.edge_kinds.append(kind)
            # For a vertical edge FlowKit's is_left sign is the sign of (ax - x), both ways.
            program.edge_lt.append(self.test(ux, fx, None, float(a[0]))
                                   if kind == K.EDGE_VERTICAL else None)
        # edge j counts +1 in the bands its upward y span reaches, −1 downward
        ra = np.array([rank[float(v[1])] for v in verts], dtype=np.int64)[:, None]
        rb = np.roll(ra, -1, axis=0)
        band = np.arange(len(ys) + 1, dtype=np.int64)[None, :]
        dirs = ((ra < band) & (band <= rb)).astype(np.int64) - \
            ((rb < band) & (band <= ra)).astype(np.int64)
        program.edge_dirs = dirs
        program.slab_left, program.slab_right = self._slabs(program, fx, ys, dirs)
        program.slab_domain = min(DOMAIN, self.transforms[fx].domain)
        if any(t.mapped is None for t in program.y_tests) or any(
                t is not None and t.mapped is None for t in program.edge_lt):
            program.exact = True

    def _slabs(self, program: GateProgram, fx: int, ys: list[float], dirs: np.ndarray):
        """Untransformed x bounds outside which a sloped edge's side is certain, per band.

        Within band b (vertex y values ys[b-1] <= y < ys[b]) a sloped edge lies between
        two x values; FlowKit counts the edge exactly when the point is left of it, so an
        x mapped (exactly, :mod:`.thresholds`) below that range is counted and one above is
        not. Anything else goes to the kernel's bracket and exact paths.
        """
        verts = program.vertices
        n = len(verts)
        left = np.full(dirs.shape, -np.inf)
        right = np.full(dirs.shape, np.inf)
        for k in range(n):
            if program.edge_kinds[k] != K.EDGE_SLOPED:
                continue
            (ax, ay), (bx, by) = verts[k], verts[(k + 1) % n]
            for band in np.nonzero(dirs[k])[0]:
                y_lo, y_hi = ys[band - 1], ys[band]
                xs = [ax + (y - ay) * (bx - ax) / (by - ay) for y in (y_lo, y_hi)]
                lo, hi = min(xs), max(xs)
                margin = 1e-9 * (abs(ax) + abs(bx) + (hi - lo)) + 1e-12
                below = self.test(0, fx, None, lo - margin).mapped
                above = self.test(0, fx, hi + margin, None).mapped
                # the piece that reaches -DOMAIN (or DOMAIN) is enough: values in other
                # pieces (FlowKit's last-bit wobble) take the slow path
                if below is not None and below.intervals \
                        and below.intervals[0][0] == -below.domain:
                    left[k, band] = below.intervals[0][1]
                if above is not None and above.intervals \
                        and above.intervals[-1][1] == above.domain:
                    right[k, band] = above.intervals[-1][0]
        return left, right

    def _bounding_test(self, value: int, xform: int, coords: np.ndarray) -> Test:
        """A range test that holds every event the shape can hold (a prefilter)."""
        lo, hi = float(np.min(coords)), float(np.max(coords))
        margin = 1e-6 * max(hi - lo, abs(lo), abs(hi), 1e-12)
        test = self.test(value, xform, lo - margin, hi + margin)
        if test.mapped is None:  # cannot prefilter exactly: let every event through
            test.mapped = RangeTest(((-np.inf, np.inf),), True, True, True, np.inf)
            test.lo = test.hi = None
        return test


def lower(strategy, sample_id: str | None = None) -> Program:
    """Lower a FlowKit ``GatingStrategy`` (see the module docstring).

    Raises
    ------
    Unsupported
        Something in the strategy the engine does not compile.
    """
    lowering = Lowering(strategy, sample_id)
    for key, gate in _gate_order(strategy, sample_id):
        lowering.lower(key, gate)
    if len(lowering.gates) == 0:
        raise Unsupported("the strategy has no gates")
    from flowkit import Matrix

    matrices = {}
    for ref in lowering.comp_refs:
        if ref == "FCS":
            continue
        matrix = strategy.comp_matrices.get(ref)
        if type(matrix) is not Matrix:
            raise Unsupported(f"compensation {ref!r} is not a square spillover matrix")
        matrices[ref] = CompMatrix(np.asarray(matrix.matrix, dtype=np.float64),
                                   list(matrix.detectors), list(matrix.fluorochromes))
    program = Program(lowering.gates, lowering.values, lowering.transforms, lowering.axes,
                      matrices)
    program.brackets = bracket_tables(program)
    return program

