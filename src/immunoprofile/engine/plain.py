"""Gates given as plain data on untransformed values, lowered without FlowKit.

Adaptive gating places a tube's gates from its own events (:mod:`immunoprofile.gating.
adaptive`), so every tube has a strategy of its own. Lowering a FlowKit strategy costs
about a second (FlowKit's import, then bisection over its transforms for every bound), far
more than gating the tube; so placed gates are expressed where no transform is needed —
every coordinate is an untransformed value (a compensated signal or a scatter value) — and
lowered here straight into the engine's :class:`~.program.Program`, in microseconds,
without importing FlowKit. The kernels then evaluate them exactly as FlowKit evaluates the
same gates written as Gating-ML 2.0 (:func:`gating_ml`): a range is ``lo <= v < hi``, a
polygon follows flowutils' bounding box and winding rule on the same values (the kernels
run FlowKit's own formula on untransformed axes), a Boolean gate combines its operands.

Three kinds cover what placement makes: :class:`PlainRectangle` (a range in one or more
dimensions), :class:`PlainPolygon` (two dimensions) and :class:`PlainBoolean` (and, or,
not). Dimensions name the file's own channels (``$PnN``) and whether they are compensated
with the file's spillover (Gating-ML ``compensation-ref="FCS"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from . import opcodes as K
from .lower import Lowering
from .pack import bracket_tables
from .program import GateProgram, Program, ValueRef

#: Gating-ML 2.0 namespaces, as FlowKit writes them.
_NAMESPACES = (
    'xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
    'xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations" '
    'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"'
)


@dataclass(frozen=True)
class PlainDimension:
    """One gate dimension: a file channel, compensated or not, untransformed.

    Attributes
    ----------
    channel : str
        The channel's ``$PnN``.
    compensated : bool
        Compensated with the file's own spillover matrix (``$SPILLOVER``).
    """

    channel: str
    compensated: bool = True


@dataclass(frozen=True)
class PlainRectangle:
    """A range gate: ``lo <= value < hi`` in every dimension (None: unbounded).

    Attributes
    ----------
    gate_id : str
    parent_id : str or None
    dimensions : tuple of PlainDimension
    bounds : tuple of (float or None, float or None)
        Per dimension, untransformed (signal or scatter units).
    """

    gate_id: str
    parent_id: str | None
    dimensions: tuple[PlainDimension, ...]
    bounds: tuple[tuple[float | None, float | None], ...]


@dataclass(frozen=True)
class PlainPolygon:
    """A polygon in two untransformed dimensions (vertices in order, closed implicitly).

    Attributes
    ----------
    gate_id : str
    parent_id : str or None
    dimensions : tuple of two PlainDimension
    vertices : tuple of (float, float)
    """

    gate_id: str
    parent_id: str | None
    dimensions: tuple[PlainDimension, PlainDimension]
    vertices: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PlainBoolean:
    """A Boolean gate over earlier gates.

    Attributes
    ----------
    gate_id : str
    parent_id : str or None
    op : {"and", "or", "not"}
    operands : tuple of (str, bool)
        ``(gate_id, complement)`` of each operand; ``not`` takes one.
    """

    gate_id: str
    parent_id: str | None
    op: str
    operands: tuple[tuple[str, bool], ...]


PlainGate = PlainRectangle | PlainPolygon | PlainBoolean


def gate_paths(gates: Sequence[PlainGate]) -> dict[str, tuple[str, ...]]:
    """FlowKit's path of every gate (``("root", ancestors…)``), by gate ID.

    Raises
    ------
    ValueError
        A gate names a parent that does not come before it, or an ID is repeated.
    """
    paths: dict[str, tuple[str, ...]] = {}
    for gate in gates:
        if gate.gate_id in paths:
            raise ValueError(f"gate ID {gate.gate_id!r} is used twice")
        if gate.parent_id is None:
            paths[gate.gate_id] = ("root",)
        elif gate.parent_id in paths:
            paths[gate.gate_id] = paths[gate.parent_id] + (gate.parent_id,)
        else:
            raise ValueError(f"gate {gate.gate_id!r}: parent {gate.parent_id!r} must come first")
    return paths


def lower_plain(gates: Sequence[PlainGate]) -> Program:
    """Lower plain gates (parents and operands first) to an engine program.

    Parameters
    ----------
    gates : sequence of PlainRectangle, PlainPolygon or PlainBoolean

    Returns
    -------
    Program
        Run it with ``GatingPlan.from_program(program)``.

    Raises
    ------
    ValueError
        A parent or operand that comes later, a repeated ID, a polygon that is not
        two-dimensional or has non-finite vertices.
    """
    paths = gate_paths(gates)
    lowering = Lowering(None, None)  # no strategy: every axis is untransformed

    def value(dim: PlainDimension) -> int:
        comp = "FCS" if dim.compensated else None
        if comp is not None:
            lowering.comp_refs.add(comp)
        return lowering.value(ValueRef(K.VALUE_CHANNEL, label=dim.channel, comp_ref=comp))

    for gate in gates:
        key = (gate.gate_id, paths[gate.gate_id])
        parent = lowering.parent_index(paths[gate.gate_id])
        if isinstance(gate, PlainBoolean):
            refs = [(lowering.index[(ref, paths[ref])], bool(complement))
                    for ref, complement in gate.operands]
            op = {"and": K.AND, "or": K.OR, "not": K.NOT}[gate.op]
            lowering.add(GateProgram(key, K.BOOLEAN, parent, refs=refs, bool_op=op,
                                     gate_type="BooleanGate"))
        elif isinstance(gate, PlainRectangle):
            tests = [lowering.test(value(d), 0, lo, hi)
                     for d, (lo, hi) in zip(gate.dimensions, gate.bounds, strict=True)]
            lowering.add(GateProgram(key, K.RECT, parent, tests=tests,
                                     gate_type="RectangleGate"))
        else:
            vertices = np.asarray(gate.vertices, dtype=np.float64)
            if vertices.ndim != 2 or vertices.shape[1] != 2 or len(gate.dimensions) != 2 \
                    or len(vertices) < 3:
                raise ValueError(f"polygon {gate.gate_id!r} is not two-dimensional")
            if not np.all(np.isfinite(vertices)):
                raise ValueError(f"polygon {gate.gate_id!r} has a non-finite vertex")
            dims = [(value(d), 0) for d in gate.dimensions]
            axes = [lowering.axis(v, x) for v, x in dims]
            # flowutils rejects a point outside the vertices' bounding box (inclusive)
            tests = [lowering.test(v, 0, float(np.min(vertices[:, j])),
                                   float(np.nextafter(np.max(vertices[:, j]), np.inf)))
                     for j, (v, _) in enumerate(dims)]
            program = GateProgram(key, K.POLYGON, parent, tests=tests, axes=axes,
                                  vertices=np.ascontiguousarray(vertices),
                                  gate_type="PolygonGate")
            lowering._polygon_edges(program, dims)
            lowering.add(program)
    program = Program(lowering.gates, lowering.values, lowering.transforms, lowering.axes, {})
    program.brackets = bracket_tables(program)
    return program


def _number(x: float) -> str:
    return repr(float(x))  # shortest text that reads back as the same double


def _dimension_xml(dim: PlainDimension, lo: float | None = None,
                   hi: float | None = None) -> str:
    comp = "FCS" if dim.compensated else "uncompensated"
    bounds = "".join(f' gating:{name}="{_number(v)}"' for name, v in (("min", lo), ("max", hi))
                     if v is not None)
    return (f'        <gating:dimension gating:compensation-ref="{comp}"{bounds}>\n'
            f'            <data-type:fcs-dimension data-type:name={quoteattr(dim.channel)} />\n'
            f'        </gating:dimension>\n')


def gating_ml(gates: Sequence[PlainGate], comment: str = "") -> str:
    """Plain gates written as a Gating-ML 2.0 document that FlowKit parses.

    Parameters
    ----------
    gates : sequence of plain gates
    comment : str
        Text for an XML comment at the top (what the gates are, where they came from).

    Returns
    -------
    str
        The document; FlowKit gates it to the same events as the engine.
    """
    paths = gate_paths(gates)
    del paths  # validates the order
    safe = comment.replace("--", "- -")
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    if safe:
        parts.append(f"<!--\n{safe}\n-->\n")
    parts.append(f"<gating:Gating-ML {_NAMESPACES}>\n")
    for gate in gates:
        parent = (f" gating:parent_id={quoteattr(gate.parent_id)}"
                  if gate.parent_id is not None else "")
        head = f"gating:id={quoteattr(gate.gate_id)}{parent}"
        if isinstance(gate, PlainRectangle):
            parts.append(f"    <gating:RectangleGate {head}>\n")
            for d, (lo, hi) in zip(gate.dimensions, gate.bounds, strict=True):
                parts.append(_dimension_xml(d, lo, hi))
            parts.append("    </gating:RectangleGate>\n")
        elif isinstance(gate, PlainPolygon):
            parts.append(f"    <gating:PolygonGate {head}>\n")
            for d in gate.dimensions:
                parts.append(_dimension_xml(d))
            for x, y in gate.vertices:
                parts.append(
                    "        <gating:vertex>\n"
                    f'            <gating:coordinate data-type:value="{_number(x)}" />\n'
                    f'            <gating:coordinate data-type:value="{_number(y)}" />\n'
                    "        </gating:vertex>\n")
            parts.append("    </gating:PolygonGate>\n")
        else:
            parts.append(f"    <gating:BooleanGate {head}>\n        <gating:{gate.op}>\n")
            for ref, complement in gate.operands:
                use = ' gating:use-as-complement="true"' if complement else ""
                parts.append(f"            <gating:gateReference gating:ref="
                             f"{quoteattr(ref)}{use} />\n")
            parts.append(f"        </gating:{gate.op}>\n    </gating:BooleanGate>\n")
    parts.append("</gating:Gating-ML>\n")
    return "".join(parts)


_GATING = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
_DATA_TYPE = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"


def read_gating_ml(text: str) -> list[PlainGate]:
    """The plain gates of a document :func:`gating_ml` wrote (``OUT/gates/<sample>.xml``),
    in its order: the inverse of :func:`gating_ml`, value for value (numbers are written
    as the shortest text that reads back as the same double).

    Parameters
    ----------
    text : str
        The document.

    Returns
    -------
    list of plain gates

    Raises
    ------
    ValueError
        Not XML, or a gate, dimension or number that :func:`gating_ml` does not write (a
        template of a lab's own: read it with FlowKit, not here).
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    g, d = f"{{{_GATING}}}", f"{{{_DATA_TYPE}}}"

    def number(value: str | None) -> float | None:
        return None if value is None else float(value)

    def dimension(node) -> PlainDimension:
        channel = node.find(f"{d}fcs-dimension")
        comp = node.get(f"{g}compensation-ref")
        if channel is None or comp not in ("FCS", "uncompensated"):
            raise ValueError("a dimension that is not a compensated or raw FCS channel")
        return PlainDimension(channel.get(f"{d}name"), comp == "FCS")

    gates: list[PlainGate] = []
    for node in root:
        kind = node.tag.removeprefix(g)
        gate_id, parent_id = node.get(f"{g}id"), node.get(f"{g}parent_id")
        dims = node.findall(f"{g}dimension")
        if kind == "RectangleGate":
            gates.append(PlainRectangle(
                gate_id, parent_id, tuple(dimension(x) for x in dims),
                tuple((number(x.get(f"{g}min")), number(x.get(f"{g}max"))) for x in dims)))
        elif kind == "PolygonGate":
            vertices = tuple(tuple(float(c.get(f"{d}value")) for c in v.findall(f"{g}coordinate"))
                             for v in node.findall(f"{g}vertex"))
            gates.append(PlainPolygon(gate_id, parent_id,
                                      tuple(dimension(x) for x in dims), vertices))
        elif kind == "BooleanGate" and len(node) == 1:
            op = node[0].tag.removeprefix(g)
            operands = tuple((r.get(f"{g}ref"), r.get(f"{g}use-as-complement") == "true")
                             for r in node[0].findall(f"{g}gateReference"))
            gates.append(PlainBoolean(gate_id, parent_id, op, operands))
        else:
            raise ValueError(f"a {kind} that adaptive gating does not write")
    gate_paths(gates)  # validates the order and the IDs
    return gates


__all__ = [
    "PlainBoolean",
    "PlainDimension",
    "PlainGate",
    "PlainPolygon",
    "PlainRectangle",
    "gate_paths",
    "gating_ml",
    "lower_plain",
    "read_gating_ml",
]
