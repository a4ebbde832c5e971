"""Lowering a FlowKit ``GatingStrategy`` to the flat arrays the gating kernel runs.

The strategy is walked once: gates are put in topological order (parents and Boolean
operands first), quadrant gates are split into one rectangle per quadrant, dimensions become
"values" (a channel, a compensated channel or a ratio) and "axes" (a value seen through a
transform), and every range bound is mapped back to untransformed values with FlowKit's own
transform (:mod:`.thresholds`). What depends on the tube — which column holds a channel, the
file's own spillover — is resolved later, per tube, by :func:`bind`.

Anything FlowKit holds that this module does not lower raises :class:`Unsupported`; the plan
then gates with FlowKit and says so. FlowKit is imported only to lower: a lowered program is
plain data (see :mod:`.program_store`), and binding it needs flowutils alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.events import EventData
from . import opcodes as K
from .thresholds import DOMAIN, NonMonotoneTest, RangeTest, range_test
from .transforms import (
    IDENTITY,
    N_PARAMS,
    TransformSpec,
    UnsupportedTransform,
    apply_compiled,
    identity_spec,
    lower_transform,
)

GateKey = tuple[str, tuple[str, ...]]


class Unsupported(Exception):
    """A strategy holds something the engine does not compile."""


@dataclass(frozen=True)
class ValueRef:
    """An untransformed per-event value, by name (resolved per tube)."""

    kind: int  # kernel.VALUE_CHANNEL (possibly compensated) or kernel.VALUE_RATIO
    label: str = ""
    comp_ref: str | None = None
    ratio: tuple = ()  # (numerator, denominator, A, B, C)


@dataclass
class Test:
    value: int
    xform: int
    lo: float | None
    hi: float | None
    mapped: RangeTest | None  # None: transform per event


@dataclass
class GateProgram:
    key: GateKey
    kind: int
    parent: int
    complement: bool = False
    tests: list[Test] = field(default_factory=list)
    axes: list[int] = field(default_factory=list)
    vertices: np.ndarray | None = None
    mean: np.ndarray | None = None
    inverse: np.ndarray | None = None
    distance_square: float = 0.0
    refs: list[tuple[int, bool]] = field(default_factory=list)
    bool_op: int = 0
    gate_type: str = ""
    exact: bool = False  # polygon: transform every event in the bounding box
    y_tests: list[Test] = field(default_factory=list)  # y >= each distinct vertex y
    edge_lt: list[Test | None] = field(default_factory=list)  # x < vertex x (vertical)
    edge_kinds: list[int] = field(default_factory=list)
    edge_dirs: np.ndarray | None = None  # (edges, bands): +1 up, -1 down, 0 not crossed
    slab_left: np.ndarray | None = None  # (edges, bands): untransformed x <= this: left
    slab_right: np.ndarray | None = None  # (edges, bands): untransformed x >= this: right
    slab_domain: float = 0.0  # slab bounds hold for |x| up to this


@dataclass
class CompMatrix:
    """A spillover matrix as FlowKit's ``Matrix`` holds it (rows and columns: detectors)."""

    matrix: np.ndarray
    detectors: list[str]
    fluorochromes: list[str]


@dataclass
class Program:
    """A strategy lowered to lists; :func:`bind` turns it into kernel arrays per tube."""

    gates: list[GateProgram]
    values: list[ValueRef]
    transforms: list[TransformSpec]
    axes: list[tuple[int, int]]
    comp_matrices: dict[str, CompMatrix]
    #: (start per axis, table of positive, of negative values): the bracket tables of
    #: the kernel's polygon test, computed once when lowering (see :func:`bracket_tables`)
    brackets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


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


class _Lowering:
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
    lowering = _Lowering(strategy, sample_id)
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


# --------------------------------------------------------------------------- binding

@dataclass
class Bound:
    """Kernel arrays for one tube layout (reused for tubes with the same channels)."""

    args: tuple
    n_gates: int
    #: the generic kernel chosen for these arrays' types, with the state it was chosen
    #: in (see :func:`.generated.generic_kernel`)
    generic_kernel: tuple | None = None


def _find_channel(label: str, events: EventData, matrix) -> int:
    if label in events.pnn:
        return events.pnn.index(label)
    if label in events.pns:
        return events.pns.index(label)
    flowjo = [p.replace("/", "_") for p in events.pnn]
    if label in flowjo:
        return flowjo.index(label)
    if matrix is not None and label in list(matrix.fluorochromes):
        detector = matrix.detectors[list(matrix.fluorochromes).index(label)]
        if detector in events.pnn:
            return events.pnn.index(detector)
    raise LookupError(f"{label} is not found as a channel label or channel reference in "
                      f"{events.name}")


def _matrix_for(ref: str | None, program: Program, events: EventData) -> CompMatrix | None:
    if ref is None:
        return None
    if ref == "FCS":
        if events.spill is None:
            return None  # Gating-ML: 'FCS' without a spillover means uncompensated
        # As FlowKit builds Matrix(spill, detectors, fluorochromes, null_channels) for a
        # Sample: flowutils parses the keyword against the fluorescence channels.
        from flowutils.compensate import parse_compensation_matrix

        nulls = list(events.null_channels or [])
        detectors = [events.pnn[i] for i in events.fluoro_indices]
        spill = parse_compensation_matrix(events.spill, detectors, null_channels=nulls or None)
        detectors = [d for d in detectors if d not in nulls]
        return CompMatrix(np.asarray(spill[1:, :], dtype=np.float64), detectors,
                          [events.pns[events.pnn.index(d)] for d in detectors])
    return program.comp_matrices[ref]


def bind(program: Program, events: EventData) -> Bound:
    """Resolve a program's channels and compensation against one tube's layout.

    Raises
    ------
    LookupError
        A dimension names a channel the tube does not have.
    """
    channels: list[int] = []

    def channel(col: int) -> int:
        if col not in channels:
            channels.append(col)
        return channels.index(col)

    matrices = {}
    val_kind, val_row, val_a, val_b = [], [], [], []
    coef_start, coef_chan, coef_w = [0], [], []
    val_ratio = np.zeros((len(program.values), 3))
    for k, ref in enumerate(program.values):
        a = b = 0
        if ref.kind == K.VALUE_RATIO:
            num, den, ra, rb, rc = ref.ratio
            for label in (num, den):
                if label not in events.pnn:
                    raise LookupError(f"{label} is not found as a channel label in "
                                      f"{events.name}")
            a, b = channel(events.pnn.index(num)), channel(events.pnn.index(den))
            val_ratio[k] = (ra, rb, rc)
            kind = K.VALUE_RATIO
        else:
            if ref.comp_ref not in matrices:
                matrices[ref.comp_ref] = _matrix_for(ref.comp_ref, program, events)
            matrix = matrices[ref.comp_ref]
            col = _find_channel(ref.label, events, matrix)
            detectors = list(matrix.detectors) if matrix is not None else []
            if events.pnn[col] in detectors:
                missing = [d for d in detectors if d not in events.pnn]
                if missing:
                    raise LookupError(f"spillover names {missing[0]} that {events.name} "
                                      "does not have")
                inverse = _inverse(matrix)
                target = detectors.index(events.pnn[col])
                for j, detector in enumerate(detectors):
                    coef_chan.append(channel(events.pnn.index(detector)))
                    coef_w.append(inverse[j, target])
                kind = K.VALUE_COMBINATION
            else:
                a = channel(col)
                kind = K.VALUE_CHANNEL
        val_kind.append(kind)
        val_row.append(a if kind == K.VALUE_CHANNEL else -1)
        val_a.append(a)
        val_b.append(b)
        coef_start.append(len(coef_chan))
    cols = np.array(channels, dtype=np.int64)
    # derived values sit after the decoded channels in the kernel's per-block table
    rows = np.array([r if r >= 0 else len(channels) + k for k, r in enumerate(val_row)],
                    dtype=np.int64)
    args = (
        cols, events.mask[cols].astype(np.uint64), events.scale[cols], events.decades[cols],
        events.log0[cols], events.value_range[cols], events.gain[cols],
        np.array(val_kind, dtype=np.int64), rows, np.array(val_a, dtype=np.int64),
        np.array(val_b, dtype=np.int64), np.array(coef_start, dtype=np.int64),
        np.array(coef_chan, dtype=np.int64), np.array(coef_w, dtype=np.float64), val_ratio,
    ) + program_arrays(program)
    return Bound(args=args, n_gates=len(program.gates))


def _inverse(matrix) -> np.ndarray:
    # flowutils compensates with solve(S.T, X.T).T, i.e. X @ inv(S).
    return np.linalg.inv(np.asarray(matrix.matrix, dtype=np.float64))


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


def program_arrays(program: Program) -> tuple:
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
    return (
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


__all__ = ["IDENTITY", "Bound", "CompMatrix", "Program", "Unsupported", "bind", "lower"]
