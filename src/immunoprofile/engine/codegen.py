"""A gating kernel written for one strategy: the generic kernel's answers, vectorised.

The generic kernel (:mod:`.kernel`) interprets a program's arrays: every gate is a few
passes over each block of events, and a polygon on a transformed axis walks its edges event
by event with branches. Here the same program is written out as Python source for Numba —
every gate, test and bound a literal, one loop over the events of a block with no branch
and no call — so that LLVM turns it into SIMD code that evaluates every gate of several
events at once. It makes the same comparisons on the same values, computed by the same
operations in the same order, so where it answers it gives the generic kernel's answer bit
for bit, and so FlowKit's.

What it cannot settle without a transform or a slow path it does not guess: it marks the
event, and :func:`.generated.run_generated` hands the marked events (a few per hundred
thousand: those within a hair of a sloped polygon edge drawn on a transformed axis, those
in the bounding box of an ellipsoid on transformed axes, and values outside the mapped
domain — NaN, infinities, magnitudes beyond ``DOMAIN``) to the generic kernel, whose
answer replaces the fast one. An event is marked when any gate that holds it (its parent
holds it) cannot settle it, so an unmarked event's every membership is exact.

Strategies with a gate the source generator does not write — polygons whose vertices are
not finite, tests whose bounds could not be mapped (transformed per event) — are left to
the generic kernel entirely (:func:`kernel_source` returns ``None``). An ellipsoid on
transformed axes is written, but marks every event in its bounding box.

Two stages per block of :data:`BLOCK` events:

1. a scalar copy of the channels the gates read, out of the row-major FCS matrix into one
   row per channel (strided reads do not vectorise well: gathers are slow), two adjacent
   4-byte channels per 8-byte load (:func:`pair_words`), with ``$PnE``/``$PnG``/time-step
   decoding for channels that need it;
2. the vectorised pass: values (channels, compensated channels, ratios), range tests on
   untransformed values against bounds mapped from FlowKit's transforms
   (:mod:`.thresholds`), polygon winding by bands and slabs (see :mod:`.kernel`), Boolean
   gates, and the parent-ANDed counts, membership words and marks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .._compile.jit import njit_source
from ..io.events import NO_MASK
from . import opcodes as K
from .bind import Bound
from .opcodes import IDENTITY
from .program import GateProgram, Program, Test

#: Events per block: the channel rows of a block stay in the L1 cache.
BLOCK = 256

#: Bumped whenever generated source changes meaning (part of every kernel's key).
FORMAT = 1


@dataclass(frozen=True)
class Layout:
    """What of a tube's binding the generated source depends on (not the numbers).

    Attributes
    ----------
    plain : tuple of bool
        Per channel read: True when its stored values are used as they are (no bit mask,
        time step, ``$PnE`` log decoding or ``$PnG`` gain).
    values : tuple
        Per program value: ``("channel", slot)``, ``("combination", (slots...))`` or
        ``("ratio", slot_a, slot_b)``; the weights and ratio constants are arguments.
    limit : float
        A power of two: decoded channel values up to this magnitude keep every channel and
        compensated value within its tests' domain (see :func:`input_limit`); events
        beyond it are marked.
    pairs : tuple of (int, int)
        Slots of plain channels stored side by side (columns c and c + 1) in 4-byte data:
        both are read with one 8-byte load (see :func:`pair_words`).
    """

    plain: tuple[bool, ...]
    values: tuple
    limit: float
    pairs: tuple[tuple[int, int], ...] = ()


def layout_of(bound: Bound, program: Program, pairable: bool = False) -> Layout | None:
    """The :class:`Layout` of a binding (see :func:`.bind.bind`); None when its
    compensation weights are not all finite (the generic kernel gates such a tube).
    ``pairable``: the data are C-ordered 4-byte values, little-endian (adjacent channels
    can then be read in pairs)."""
    t = bound.args.tube
    cols, mask, scale, decades, gain = (t.chan_col, t.chan_mask, t.chan_scale,
                                        t.chan_decades, t.chan_gain)
    val_kind, val_a, val_b = t.val_kind, t.val_a, t.val_b
    coef_start, coef_chan, coef_w = t.val_coef_start, t.coef_chan, t.coef_w
    plain = tuple(bool(mask[c] == NO_MASK and scale[c] == 1.0 and not decades[c] > 0.0
                       and (gain[c] == 1.0 or gain[c] == 0.0)) for c in range(cols.size))
    values = []
    for k, kind in enumerate(val_kind):
        if kind == K.VALUE_COMBINATION:
            values.append(("combination",
                           tuple(int(c) for c in coef_chan[coef_start[k]:coef_start[k + 1]])))
        elif kind == K.VALUE_RATIO:
            values.append(("ratio", int(val_a[k]), int(val_b[k])))
        else:
            values.append(("channel", int(val_a[k])))
    limit = input_limit(tuple(values), value_domains(program), coef_w)
    if limit is None:
        return None
    pairs = []
    if pairable:
        slot_of = {int(cols[c]): c for c in range(cols.size) if plain[c]}
        taken: set[int] = set()
        for column in sorted(slot_of):
            if column in taken or column + 1 not in slot_of or column + 1 in taken:
                continue
            pairs.append((slot_of[column], slot_of[column + 1]))
            taken |= {column, column + 1}
    return Layout(plain, tuple(values), limit, tuple(pairs))


def pair_words(data: np.ndarray) -> np.ndarray:
    """The 8-byte words starting at every 4-byte value of each event but its last:
    ``words[i, c]`` holds channels ``c`` and ``c + 1`` of event ``i`` (a strided,
    unaligned view of ``data``, no copy). Reading two channels with one load halves
    the scalar copy out of the row-major FCS matrix, the kernel's largest single cost."""
    n, p = data.shape
    if p < 2:
        return np.zeros((1, 1), dtype=np.uint64)
    return np.ndarray((n, p - 1), dtype=np.uint64, buffer=data, offset=0,
                      strides=(data.strides[0], data.itemsize))


def reads_pairs(source: str) -> bool:
    """Whether a generated module (its source) reads channel pairs (:func:`pair_words`)."""
    return "\nPAIRS = 0\n" not in source


def value_domains(program: Program) -> dict[int, float]:
    """Per value that a mapped test reads, the smallest domain of those tests (and of the
    slab bounds of a polygon on a transformed axis): within it every test is exact."""
    domain: dict[int, float] = {}

    def narrow(value: int, bound: float) -> None:
        domain[value] = min(domain.get(value, math.inf), bound)

    for gate in program.gates:
        for t in list(gate.tests) + list(gate.y_tests) + [t for t in gate.edge_lt if t]:
            narrow(t.value, t.mapped.domain)
        if gate.kind == K.POLYGON and not _identity_axes(program, gate):
            narrow(program.axes[gate.axes[0]][0], gate.slab_domain)
    return domain


def input_limit(values: tuple, domains: dict[int, float], coef_w: np.ndarray) -> float | None:
    """The largest power of two up to which every channel read by a checked value can go.

    A channel value must stay within its domain ``D``; a compensated value
    ``sum(x_j * w_j)`` (one rounding per product and per sum) stays within ``D`` when
    every ``|x_j| <= D / (sum |w_j| * (1 + 2**-40))``. The smallest such bound is rounded
    down to a power of two, so that tubes whose spillover matrices differ a little share
    one generated kernel. None (the generic kernel gates the tube) when a weight is not
    finite or the weights are too large for any bound.
    """
    limit = math.inf
    checked = False
    weight = 0
    for k, spec in enumerate(values):
        if spec[0] == "ratio":
            continue  # a ratio is checked itself
        n_terms = len(spec[1]) if spec[0] == "combination" else 0
        weights = np.asarray(coef_w[weight:weight + n_terms], dtype=np.float64)
        weight += n_terms
        if k not in domains:
            continue
        if not np.all(np.isfinite(weights)):
            return None
        checked = True
        with np.errstate(over="ignore"):
            total = float(np.sum(np.abs(weights))) * (1 + 2.0**-40)
        if not math.isfinite(total):
            return None  # weights this large: the generic kernel decides every event
        bound = domains[k] / total if total > 0 else domains[k]
        limit = min(limit, bound)
    if not checked:
        return math.inf  # no value has a domain: nothing to check
    # tiny weights allow any finite input; infinite and NaN ones must still be caught
    limit = min(limit, float(np.finfo(np.float64).max))
    if not limit > 0:
        return None
    return math.ldexp(1.0, math.frexp(limit)[1] - 1)


def _identity_axes(program: Program, gate: GateProgram) -> bool:
    return all(program.transforms[program.axes[a][1]].kind == IDENTITY for a in gate.axes)


def _lit(x: float) -> str:
    """A float64 literal that reads back as exactly ``x``."""
    x = float(x)
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INF" if x > 0 else "(-INF)"
    return repr(x)


class _Writer:
    """Builds the per-event statements of the vectorised pass.

    Values outside a test's mapped domain (NaN, infinities, huge magnitudes) are caught by
    one check per value against the smallest domain of the tests that read it (the event
    is then marked), so the tests themselves leave out comparisons that every value within
    that domain passes (an open bound is mapped to the domain's edge).
    """

    def __init__(self, program: Program, layout: Layout):
        self.program = program
        self.layout = layout
        self.lines: list[str] = []
        self._tests: dict[tuple, str] = {}
        self.domain = value_domains(program)
        self.unsure: list[str] = []  # per-event flags of gates that left it unsettled
        self._bands: set[str] = set()

    def _identity(self, gate: GateProgram) -> bool:
        return _identity_axes(self.program, gate)

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def values(self) -> None:
        # Same operations in the same order as kernel._gate_blocks (see its comments).
        weight = 0
        for k, spec in enumerate(self.layout.values):
            if spec[0] == "channel":
                self.emit(f"v{k} = x{spec[1]}")
            elif spec[0] == "ratio":
                self.emit(f"v{k} = ra{k} * ((x{spec[1]} - rb{k}) / (x{spec[2]} - rc{k}))")
            else:
                slots = spec[1]
                terms = [f"x{s} * w{weight + j}" for j, s in enumerate(slots)]
                weight += len(slots)
                if len(terms) in (2, 3):
                    self.emit(f"v{k} = " + " + ".join(terms))
                else:
                    expr = "0.0"
                    for term in terms:
                        expr = f"({expr} + {term})"
                    self.emit(f"v{k} = {expr}")

    def abnormal(self, stored: dict[int, str]) -> str:
        """An expression that is True when a value may lie outside its tests' domain.

        A ratio is checked itself; a channel or compensated channel through the stored
        values it is made of, against the layout's input limit (a power of two, so the
        comparison is in the file's own type: for float32 data twice as fast as in
        float64).
        """
        limit = _lit(self.layout.limit)
        inside = [f"(abs({stored[c]}) <= {limit})" for c in self.checked_channels()]
        inside += [f"(abs(v{k}) <= {_lit(d)})" for k, d in sorted(self.domain.items())
                   if self.layout.values[k][0] == "ratio"]
        return "(not (" + " & ".join(inside) + "))" if inside else "False"

    def checked_channels(self) -> list[int]:
        """Channel slots whose stored values are checked against the input limit."""
        slots = set()
        for k, spec in enumerate(self.layout.values):
            if k in self.domain and spec[0] == "channel":
                slots.add(spec[1])
            elif k in self.domain and spec[0] == "combination":
                slots.update(spec[1])
        return sorted(slots) if math.isfinite(self.layout.limit) else []

    def test(self, test: Test) -> str:
        """Name of the pass flag of a mapped range test (values within the domain)."""
        mapped = test.mapped
        key = (test.value, mapped.intervals)
        if key not in self._tests:
            v = f"v{test.value}"
            bound = self.domain[test.value]
            pieces = []
            for lo, hi in mapped.intervals:
                if lo == hi:  # one double (FlowKit's last-bit wobble at a bound)
                    pieces.append(f"({v} == {_lit(lo)})")
                    continue
                parts = ([f"({v} >= {_lit(lo)})"] if lo > -bound else []) + \
                        ([f"({v} <= {_lit(hi)})"] if hi < bound else [])
                pieces.append("(" + " & ".join(parts) + ")" if parts else "True")
            name = f"p{len(self._tests)}"
            self.emit(f"{name} = " + (" | ".join(pieces) if pieces else "False"))
            self._tests[key] = name
        return self._tests[key]

    def gate(self, g: int, gate: GateProgram) -> None:
        parent = f"m{gate.parent}" if gate.parent >= 0 else "True"
        if gate.kind == K.BOOLEAN:
            refs = [f"(m{r} != {c})" for r, c in gate.refs]
            if gate.bool_op == K.NOT:
                result = f"(not {refs[0]})"
            elif gate.bool_op == K.AND:
                result = "(" + " & ".join(refs) + ")"
            else:
                result = "(" + " | ".join(refs) + ")"
            self.emit(f"m{g} = {parent} & {result}")
            return
        # A polygon's range tests are its vertices' bounding box (flowutils rejects points
        # outside it before winding). Untransformed polygons test it below (in x: the
        # crossing tests imply it in y); by bands and slabs an event beyond it is left of
        # every crossing edge of its band (an even number), right of every one, or marked
        # (within a slab), so transformed polygons need not test it.
        passes = [self.test(t) for t in gate.tests] if gate.kind != K.POLYGON else []
        self.emit(f"c{g} = " + (" & ".join(passes) if passes else "True"))
        if gate.kind == K.POLYGON:
            if self._identity(gate):
                self.identity_polygon(g, gate)
            else:
                self.polygon(g, gate, parent)
        elif gate.kind == K.ELLIPSOID:
            self.ellipsoid(g, gate, parent)
        self.emit(f"m{g} = {parent} & (c{g} != {gate.complement})")

    def ellipsoid(self, g: int, gate: GateProgram, parent: str) -> None:
        """The quadratic form of kernel._gate_blocks, term by term in its order, on
        untransformed axes; on transformed ones every event within the bounding box is
        marked (its transform is the generic kernel's to evaluate)."""
        if not self._identity(gate):
            self.emit(f"u{g} = {parent} & c{g}")
            self.unsure.append(f"u{g}")
            return
        dims = len(gate.axes)
        t = [f"v{self.program.axes[a][0]}" for a in gate.axes]
        mean, inverse = gate.mean, gate.inverse.ravel()
        total = "0.0"
        for col in range(dims):
            rot = "0.0"
            for row in range(dims):
                rot = (f"({rot} + (({t[row]} - {_lit(mean[row])}) * "
                       f"{_lit(inverse[row * dims + col])}))")
            self.emit(f"r{g}_{col} = {rot}")
            total = f"({total} + r{g}_{col} * ({t[col]} - {_lit(mean[col])}))"
        self.emit(f"c{g} = c{g} & ({total} <= {_lit(gate.distance_square)})")

    def identity_polygon(self, g: int, gate: GateProgram) -> None:
        """FlowKit's own arithmetic on the untransformed point, edge by edge.

        Only the winding number's parity decides (odd: inside), so each counted edge
        flips it whichever way it goes. An edge counts only while ay <= py < by (up) or
        by <= py < ay (down), so the other direction's test is left out, and a horizontal
        edge never counts. For a vertical edge ``(bx - ax) * (py - ay)`` is a signed zero
        whenever it counts (py is then finite), which decides nothing. A point outside the
        vertices' bounding box is outside (flowutils rejects it before winding).
        """
        (vx, _), (vy, _) = (self.program.axes[a] for a in gate.axes)
        px, py = f"v{vx}", f"v{vy}"
        verts = gate.vertices
        n = len(verts)
        # "py >= vertex y", once per distinct y: ay <= py < by is ge(ay) & not ge(by)
        ys = sorted({float(y) for y in verts[:, 1]})
        for r, y in enumerate(ys):
            self.emit(f"y{g}_{r} = {py} >= {_lit(y)}")

        def between(low: float, high: float) -> str:
            return f"y{g}_{ys.index(float(low))} & (not y{g}_{ys.index(float(high))})"

        flips = []
        for k in range(n):
            (ax, ay), (bx, by) = verts[k], verts[(k + 1) % n]
            if ay == by:
                continue
            if ax == bx and abs(by - ay) >= 1.0:
                # value = ±0 - t with t = (px - ax) * (by - ay): > 0 exactly when t < 0.
                # With |by - ay| >= 1, t cannot round to zero unless px == ax (a nonzero
                # difference of doubles is at least the smallest one), so t < 0 for an
                # upward edge, t > 0 for a downward one, is px < ax either way.
                up = down = f"({px} < {_lit(ax)})"
            elif ax == bx:
                # a short vertical edge: t itself (it may underflow to zero, and then,
                # as in FlowKit, the edge does not count)
                term = f"(({px} - {_lit(ax)}) * {_lit(by - ay)})"
                up, down = f"({term} < 0.0)", f"({term} > 0.0)"
            else:
                self.emit(f"e{g}_{k} = {_lit(bx - ax)} * ({py} - {_lit(ay)}) - "
                          f"({px} - {_lit(ax)}) * {_lit(by - ay)}")
                up, down = f"(e{g}_{k} > 0.0)", f"(e{g}_{k} < 0.0)"
            if ay < by:
                flips.append(f"({between(ay, by)} & {up})")
            else:
                flips.append(f"({between(by, ay)} & {down})")
        # flowutils' bounding box: in y the crossing tests imply it (a point below every
        # vertex or at or above the highest crosses no edge); in x it is tested
        xs = verts[:, 0]
        box = f"({px} >= {_lit(np.min(xs))}) & ({px} <= {_lit(np.max(xs))})"
        self.emit(f"c{g} = c{g} & {box} & (" + (" ^ ".join(flips) if flips else "False") + ")")

    def polygon(self, g: int, gate: GateProgram, parent: str) -> None:
        """Bands and slabs (see kernel._polygon_column); events between a sloped edge's
        slab bounds are marked.

        The band is read from the "y >= vertex y" tests directly (band b: test b-1 passes,
        test b fails), and the winding number's parity is the XOR of the counted edges.
        """
        (vx, _), _ = (self.program.axes[a] for a in gate.axes)
        px = f"v{vx}"
        n = len(gate.vertices)
        ys = [self.test(t) for t in gate.y_tests]
        ny = len(ys)

        def band(b: int) -> str:
            name = f"b{g}_{b}"
            if name not in self._bands:
                if b == 0:
                    expr = f"(not {ys[0]})"
                elif b == ny:
                    expr = ys[ny - 1]
                else:
                    expr = f"({ys[b - 1]} & (not {ys[b]}))"
                self.emit(f"{name} = {expr}")
                self._bands.add(name)
            return name

        # Per band (bands exclude each other): the XOR of its counted edges, and whether
        # the event lies within a slab of one of them.
        flips: dict[int, list[str]] = {}
        opens: dict[int, list[str]] = {}
        for k in range(n):
            kind = gate.edge_kinds[k]
            if kind == K.EDGE_HORIZONTAL:
                continue
            bands = [int(b) for b in np.nonzero(gate.edge_dirs[k])[0]]
            if kind == K.EDGE_VERTICAL:
                left = self.test(gate.edge_lt[k])
                for b in bands:
                    flips.setdefault(b, []).append(left)
                continue
            for b in bands:
                lo, hi = gate.slab_left[k, b], gate.slab_right[k, b]
                name = f"l{g}_{k}_{b}"
                self.emit(f"{name} = {px} <= {_lit(lo)}")
                flips.setdefault(b, []).append(name)
                opens.setdefault(b, []).append(f"((not {name}) & ({px} < {_lit(hi)}))")

        def per_band(terms: dict[int, list[str]], join: str, combine: str) -> str:
            parts = [f"({band(b)} & ({join.join(terms[b])}))" for b in sorted(terms)]
            return combine.join(parts) if parts else "False"

        if opens:
            self.emit(f"u{g} = {parent} & c{g} & ({per_band(opens, ' | ', ' | ')})")
            self.unsure.append(f"u{g}")
        self.emit(f"c{g} = c{g} & ({per_band(flips, ' ^ ', ' ^ ')})")


def supported(program: Program) -> str | None:
    """Why the source generator leaves ``program`` to the generic kernel (None: it doesn't)."""
    for gate in program.gates:
        name = gate.key[0]
        if gate.kind == K.POLYGON and (gate.exact or len(gate.axes) != 2):
            return f"polygon {name!r} is evaluated exactly on every event"
        tests = list(gate.tests) + list(gate.y_tests) + [t for t in gate.edge_lt if t]
        if any(t.mapped is None for t in tests):
            return f"gate {name!r} has a test transformed per event"
    return None


def kernel_source(program: Program, layout: Layout) -> str | None:
    """Python source of a module with the strategy's kernels, or None (see module doc).

    The module defines ``gate_counts`` and ``gate_bits``, each
    ``(data, words, n, b0, b1, cols, mask, scale, decades, log0, value_range, gain, coef_w,
    val_ratio, marked[, bits]) -> int64[gates + 1]`` (``words`` from :func:`pair_words`
    when the layout has pairs): events of blocks ``b0 … b1-1`` in
    every gate, marked events left out, then how many were marked; their event indices
    are written to ``marked`` from position ``b0 * BLOCK`` on. ``gate_bits`` also writes
    the membership words (``bits[w, event]``, bit ``g % 64`` of word ``g // 64``).
    """
    if supported(program) is not None:
        return None
    writer = _Writer(program, layout)
    writer.values()
    for g, gate in enumerate(program.gates):
        writer.gate(g, gate)
    n_gates = len(program.gates)
    n_words = (n_gates + 63) // 64
    body = list(writer.lines)
    paired = {c for pair in layout.pairs for c in pair}
    plain = [c for c, p in enumerate(layout.plain) if p and c not in paired]
    decoded = [c for c, p in enumerate(layout.plain) if not p]
    stored = {c: f"raw[{row}, j]" for row, c in enumerate(plain)}
    for k, (lo, hi) in enumerate(layout.pairs):
        stored[lo], stored[hi] = f"halves[{k}, 2 * j]", f"halves[{k}, 2 * j + 1]"
    stored.update({c: f"x{c}" for c in decoded})
    body.append("u = " + " | ".join([writer.abnormal(stored)] + writer.unsure))
    body.append("ok = not u")
    body += [f"k{g} += m{g} & ok" for g in range(n_gates)]
    body.append("flg[j] = u")
    body.append("nblk += u")
    words = []
    for w in range(n_words):
        parts = [f"(np.uint64(m{g}) << np.uint64({g - 64 * w}))"
                 for g in range(64 * w, min(64 * w + 64, n_gates))]
        words.append(f"bits[{w}, r] = " + " | ".join(parts))

    n_weights = sum(len(v[1]) for v in layout.values if v[0] == "combination")
    ratios = [k for k, v in enumerate(layout.values) if v[0] == "ratio"]

    def function(name: str, with_bits: bool) -> list[str]:
        args = ("data, words, n, b0, b1, cols, mask, scale, decades, log0, value_range, "
                "gain, coef_w, val_ratio, marked" + (", bits" if with_bits else ""))
        i1, i2, i3, i4 = ("    " * d for d in range(1, 5))
        out = ["", "", njit_source(),
               f"def {name}({args}):",
               f"{i1}raw = np.empty(({max(len(plain), 1)}, BLOCK), data.dtype)",
               f"{i1}pair = np.empty(({max(len(layout.pairs), 1)}, BLOCK), np.uint64)",
               f"{i1}halves = pair.view(data.dtype)",
               f"{i1}dec = np.empty(({max(len(decoded), 1)}, BLOCK), np.float64)",
               f"{i1}flg = np.empty(BLOCK, np.uint8)"]
        out += [f"{i1}col{c} = cols[{c}]" for c in range(len(layout.plain))]
        out += [f"{i1}w{j} = coef_w[{j}]" for j in range(n_weights)]
        for k in ratios:
            out += [f"{i1}ra{k} = val_ratio[{k}, 0]", f"{i1}rb{k} = val_ratio[{k}, 1]",
                    f"{i1}rc{k} = val_ratio[{k}, 2]"]
        out += [f"{i1}k{g} = 0" for g in range(n_gates)]
        out += [f"{i1}nflag = 0",
                f"{i1}for blk in range(b0, b1):",
                f"{i2}s = blk * BLOCK",
                f"{i2}nb = min(s + BLOCK, n) - s"]
        if plain or layout.pairs:  # stage 1: the channels, row by row (strided reads)
            out.append(f"{i2}for j in range(nb):")
            out += [f"{i3}pair[{k}, j] = words[s + j, col{lo}]"
                    for k, (lo, _) in enumerate(layout.pairs)]
            out += [f"{i3}raw[{row}, j] = data[s + j, col{c}]" for row, c in enumerate(plain)]
        for row, c in enumerate(decoded):
            out += [f"{i2}for j in range(nb):",
                    f"{i3}dec[{row}, j] = decode_value(data[s + j, col{c}], mask[{c}], scale[{c}], "
                    f"decades[{c}], log0[{c}], value_range[{c}], gain[{c}])"]
        out += [f"{i2}nblk = 0",  # stage 2: every gate, vectorised
                f"{i2}for j in range(nb):",
                f"{i3}r = s + j"]
        out += [f"{i3}x{c} = np.float64(raw[{row}, j])" for row, c in enumerate(plain)]
        out += [f"{i3}x{c} = np.float64({stored[c]})" for pair in layout.pairs for c in pair]
        out += [f"{i3}x{c} = dec[{row}, j]" for row, c in enumerate(decoded)]
        out += [i3 + line for line in body]
        if with_bits:
            out += [i3 + line for line in words]
        out += [f"{i2}if nblk:",  # rare: note which events are marked
                f"{i3}for j in range(nb):",
                f"{i4}if flg[j]:",
                f"{i4}    marked[b0 * BLOCK + nflag] = s + j",
                f"{i4}    nflag += 1",
                f"{i1}out = np.empty({n_gates + 1}, np.int64)"]
        out += [f"{i1}out[{g}] = k{g}" for g in range(n_gates)]
        out += [f"{i1}out[{n_gates}] = nflag", f"{i1}return out"]
        return out

    header = [
        '"""Generated by immunoprofile.engine.codegen for one gating strategy; do not edit."""',
        "",
        "import math",
        "",
        "import numba",
        "import numpy as np",
        "",
        "from immunoprofile.engine.kernel import decode_value",
        "",
        "INF = math.inf",
        "NAN = math.nan",
        f"BLOCK = {BLOCK}",
        f"N_GATES = {n_gates}",
        f"N_WORDS = {n_words}",
        f"PAIRS = {len(layout.pairs)}",
    ]
    lines = header + function("gate_counts", False) + function("gate_bits", True)
    return "\n".join(lines) + "\n"


def source_key(source: str, *versions: str) -> str:
    """Name of a generated module: a digest of its source and what it was built with."""
    text = "\x00".join((source, str(FORMAT)) + versions)
    return "k" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
