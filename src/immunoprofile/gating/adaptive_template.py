"""Reading a Gating-ML 2.0 template with its adaptation declarations, without FlowKit.

An adaptive template is an ordinary Gating-ML 2.0 file: every tool reads its gates at their
*seed* positions (``--gating fixed`` gates with exactly those). A gate declares how it
adapts to each tube in its ``data-type:custom_info`` element, which Gating-ML reserves for
such software-specific data and other readers skip::

    <gating:RectangleGate gating:id="CD3pos" gating:parent_id="Lymphocytes">
        <data-type:custom_info>
            <adapt:valley xmlns:adapt="urn:immunoprofile:adaptive:1"
                          search="0.28 0.52" tail-offset="0.10" min-depth="0.5" />
        </data-type:custom_info>
        <gating:dimension ... gating:min="0.3813"> ...

The methods (``valley``, ``cluster``, ``beads``, ``scale``) and their attributes are
documented in ``gating/README.md`` and :mod:`.placement`. This module reads what placement
needs — gates, dimensions, seed coordinates, logicle parameters, declarations — with the
standard library's XML parser, so the command line places gates without importing FlowKit.
It reads the Gating-ML subset immunoprofile's templates use: rectangle, polygon and Boolean
gates; untransformed or logicle dimensions, compensated with the file's own spillover or
not. Anything else is refused for adaptive gating with a message naming the gate.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import TemplateError
from .density_kernels import lookup_on_asinh_grid

_G = "{http://www.isac-net.org/std/Gating-ML/v2.0/gating}"
_T = "{http://www.isac-net.org/std/Gating-ML/v2.0/transformations}"
_D = "{http://www.isac-net.org/std/Gating-ML/v2.0/datatypes}"
#: Namespace of the adaptation declarations inside ``custom_info``.
ADAPT_NAMESPACE = "urn:immunoprofile:adaptive:1"
_A = "{" + ADAPT_NAMESPACE + "}"
METHODS = ("valley", "cluster", "beads", "scale")
#: The attributes each method reads, and how many numbers each holds (``gating/README.md``):
#: a name not here, or text that is not that many numbers, is refused when the template is
#: read — a misspelt ``max-floor-shar`` would otherwise switch its check off unseen.
ATTRIBUTES: dict[str, dict[str, int]] = {
    "valley": {"search": 2, "tail-offset": 1, "min-depth": 1, "bandwidth": 1,
               "floor-noise": 1, "max-floor-share": 1, "dimension": 1},
    "cluster": {"level": 1, "ssc-band": 1, "cd45-band": 1, "positive-band": 1,
                "bandwidth": 2, "bins": 1},
    "beads": {"search": 2, "spread": 1},
    "scale": {"expected": 1, "search": 1},
}


@dataclass(frozen=True)
class Logicle:
    """Logicle parameters (Parks et al. 2006): top of scale T, width W, decades M, A."""

    t: float
    w: float
    m: float
    a: float

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Logicle units (0–1 over the scale) of untransformed values.

        Interpolated in a table of the exact transform, on a grid uniform in asinh of the
        signal (logicle is nearly linear in asinh, so 8,192 entries keep it within 1e-5
        logicle units): placement needs positions, not FlowKit's last bit (the engine
        counts placed gates on untransformed values, exactly), and flowutils' per-value
        root finding costs ~1 µs a value.
        """
        table, grid = _logicle_table(self)
        return lookup_on_asinh_grid(np.asarray(values, dtype=np.float64), table, grid)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Untransformed values of logicle units (the exact closed-form inverse)."""
        from flowutils.transforms import logicle_inverse

        v = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        return logicle_inverse(v, [0], t=self.t, m=self.m, w=self.w, a=self.a).ravel()


@lru_cache(maxsize=16)
def _logicle_table(scale: Logicle) -> tuple[np.ndarray, np.ndarray]:
    """The transform on a grid uniform in asinh(x·s), s = 10^M / T, from −0.5 to 1.5
    logicle units: ``(table, [s, u0, du])`` for :func:`.density_kernels.lookup_on_asinh_grid`.
    Built from the exact inverse on a fine grid of logicle units (steps of 1e-4)."""
    ys = np.arange(-0.5, 1.5, 1e-4)
    xs = scale.inverse(ys)
    s = 10.0 ** scale.m / scale.t
    u = np.linspace(np.arcsinh(xs[0] * s), np.arcsinh(xs[-1] * s), 8192)
    table = np.interp(np.sinh(u) / s, xs, ys)
    return table, np.array([s, u[0], u[1] - u[0]])


@dataclass(frozen=True)
class TemplateDimension:
    """One dimension of a template gate.

    Attributes
    ----------
    channel : str
        Channel name (already fitted to the file's channels).
    compensated : bool
        ``compensation-ref="FCS"``.
    transform : Logicle or None
        None: untransformed.
    lo, hi : float or None
        Seed bounds of a rectangle dimension, in the transform's units.
    """

    channel: str
    compensated: bool
    transform: Logicle | None
    lo: float | None = None
    hi: float | None = None

    def to_scale(self, values: np.ndarray) -> np.ndarray:
        """Untransformed values → the dimension's own scale."""
        return values if self.transform is None else self.transform.forward(values)

    def from_scale(self, values: np.ndarray) -> np.ndarray:
        """The dimension's scale → untransformed values."""
        return values if self.transform is None else self.transform.inverse(values)


@dataclass(frozen=True)
class Adaptation:
    """A gate's declaration of how it adapts: a method and its attributes (text)."""

    method: str
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # every declaration is checked where it is made, read from a template or built in
        # code: placement then reads its numbers without checking them again
        _check_attributes(self.method, self.attributes)

    def number(self, name: str, default: float) -> float:
        """An attribute as a number (the default when absent)."""
        text = self.attributes.get(name)
        return default if text is None else float(text)

    def pair(self, name: str) -> tuple[float, float] | None:
        """An attribute holding two numbers (``"lo hi"``), or None when absent."""
        text = self.attributes.get(name)
        if text is None:
            return None
        lo, hi = (float(x) for x in text.split())
        return lo, hi


@dataclass(frozen=True)
class TemplateGate:
    """One gate of a template at its seed position."""

    gate_id: str
    parent_id: str | None
    kind: str  # "rectangle", "polygon", "boolean"
    dimensions: tuple[TemplateDimension, ...] = ()
    vertices: tuple[tuple[float, float], ...] = ()
    op: str = ""
    operands: tuple[tuple[str, bool], ...] = ()
    adaptations: tuple[Adaptation, ...] = ()


@dataclass(frozen=True)
class AdaptiveTemplate:
    """A template's gates in order (parents and operands first)."""

    path: str
    gates: tuple[TemplateGate, ...]

    @property
    def adaptive(self) -> bool:
        """Whether any gate declares an adaptation."""
        return any(g.adaptations for g in self.gates)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def _transforms(root) -> dict[str, Logicle | None]:
    out: dict[str, Logicle | None] = {}
    for node in root.iter(f"{_T}transformation"):
        tid = node.get(f"{_T}id")
        logicle = node.find(f"{_T}logicle")
        if logicle is None:
            out[tid] = None  # not supported for adaptive gating (refused when used)
            continue
        out[tid] = Logicle(*(float(logicle.get(f"{_T}{p}")) for p in ("T", "W", "M", "A")))
    return out


def _dimension(node, transforms, where: str) -> TemplateDimension:
    fcs = node.find(f"{_D}fcs-dimension")
    if fcs is None:
        raise TemplateError(f"{where}: adaptive gating needs plain FCS dimensions "
                            "(no ratio dimensions)")
    ref = node.get(f"{_G}transformation-ref")
    if ref is not None and transforms.get(ref) is None:
        raise TemplateError(f"{where}: transform {ref!r} is not logicle — adaptive gating "
                            "places gates on untransformed or logicle axes; use --gating fixed")
    comp = node.get(f"{_G}compensation-ref", "uncompensated")
    if comp not in ("FCS", "uncompensated"):
        raise TemplateError(f"{where}: compensation {comp!r} — adaptive gating compensates "
                            "with the file's own spillover (FCS) or not at all")
    return TemplateDimension(fcs.get(f"{_D}name"), comp == "FCS",
                             transforms.get(ref) if ref is not None else None,
                             _float(node.get(f"{_G}min")), _float(node.get(f"{_G}max")))


def _adaptations(node, where: str) -> tuple[Adaptation, ...]:
    info = node.find(f"{_D}custom_info")
    if info is None:
        return ()
    out = []
    for child in info.iter():
        if not child.tag.startswith(_A):
            continue
        method = child.tag[len(_A):]
        if method not in METHODS:
            raise TemplateError(f"{where}: unknown adaptation {method!r} "
                                f"(known: {', '.join(METHODS)})")
        try:
            out.append(Adaptation(method, dict(child.attrib)))
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
    return tuple(out)


def _check_attributes(method: str, attributes: dict[str, str]) -> None:
    """TemplateError naming the attribute for a name the method does not read or a value
    that is not the number(s) it must be, in its range."""
    known = ATTRIBUTES[method]
    for name, text in attributes.items():
        if name not in known:
            raise TemplateError(f"adapt:{method} has no attribute {name!r} "
                                f"(known: {', '.join(sorted(known))})")
        parts = text.split()
        try:
            ok = len(parts) == known[name] and all(np.isfinite(float(p)) for p in parts)
        except ValueError:
            ok = False
        if not ok:
            what = "a number" if known[name] == 1 else f"{known[name]} numbers"
            raise TemplateError(f"adapt:{method} {name}={text!r} must be {what}")
        values = [float(p) for p in parts]
        rule = _VALUE_RULES.get((method, name)) or _VALUE_RULES.get(("*", name))
        if rule is not None and not rule[0](values):
            raise TemplateError(f"adapt:{method} {name}={text!r} must be {rule[1]}")


def _whole(v: list[float], lo: float) -> bool:
    return all(x == int(x) and x >= lo for x in v)


#: What each attribute's numbers must be, beyond numbers (method or "*", name) →
#: (test, words for the message).
_VALUE_RULES = {
    ("*", "search"): (lambda v: len(v) == 1 or v[0] < v[1], "two numbers, low then high"),
    ("scale", "search"): (lambda v: v[0] > 1.0, "a factor above 1"),
    ("*", "dimension"): (lambda v: _whole(v, 0), "a whole number from 0 (the first)"),
    ("*", "bins"): (lambda v: _whole(v, 16), "a whole number of at least 16"),
    ("*", "max-floor-share"): (lambda v: 0.0 <= v[0] < 1.0,
                               "a share at least 0 and under 1 (0.05 for 5 %)"),
    ("*", "level"): (lambda v: 0.0 < v[0] < 1.0, "a share above 0 and under 1"),
    ("*", "min-depth"): (lambda v: 0.0 <= v[0] <= 1.0, "a depth from 0 to 1"),
    ("*", "bandwidth"): (lambda v: all(x > 0 for x in v), "positive"),
    ("*", "tail-offset"): (lambda v: v[0] >= 0, "0 or more"),
    ("*", "floor-noise"): (lambda v: v[0] >= 0, "0 or more"),
    ("*", "spread"): (lambda v: v[0] > 0, "positive"),
    ("*", "expected"): (lambda v: v[0] > 0, "positive (the population's mode, signal units)"),
    ("*", "ssc-band"): (lambda v: v[0] >= 1.0, "a factor of 1 or more"),
    ("*", "cd45-band"): (lambda v: v[0] >= 0, "0 or more"),
    ("*", "positive-band"): (lambda v: v[0] >= 0, "0 or more"),
}


def parse_adaptive_template(text: str, source: str = "template") -> AdaptiveTemplate:
    """Read a Gating-ML 2.0 template's gates and adaptation declarations.

    Parameters
    ----------
    text : str
        The template (channel names already fitted to the file).
    source : str
        Its file name, for messages.

    Raises
    ------
    TemplateError
        Not XML, or holding what adaptive gating cannot place (named, with the gate).
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TemplateError(f"{source}: not a valid Gating-ML 2.0 template: {exc}") from None
    transforms = _transforms(root)
    gates = []
    for node in root:
        tag = node.tag
        if not tag.startswith(_G) or not tag.endswith("Gate"):
            continue
        gid = node.get(f"{_G}id")
        parent = node.get(f"{_G}parent_id")
        where = f"{source}: gate {gid}"
        adapt = _adaptations(node, where)
        kind = tag[len(_G):]
        if kind == "RectangleGate":
            dims = tuple(_dimension(d, transforms, where) for d in node.findall(f"{_G}dimension"))
            for a in adapt:
                if int(a.number("dimension", 0)) >= len(dims):
                    raise TemplateError(
                        f"{where}: adapt:{a.method} dimension={a.attributes['dimension']!r}: "
                        f"the gate has {len(dims)} dimension(s), numbered from 0")
            gates.append(TemplateGate(gid, parent, "rectangle", dims, adaptations=adapt))
        elif kind == "PolygonGate":
            dims = tuple(_dimension(d, transforms, where) for d in node.findall(f"{_G}dimension"))
            verts = tuple(tuple(float(c.get(f"{_D}value")) for c in v.findall(f"{_G}coordinate"))
                          for v in node.findall(f"{_G}vertex"))
            gates.append(TemplateGate(gid, parent, "polygon", dims, verts,  # type: ignore[arg-type]
                                      adaptations=adapt))
        elif kind == "BooleanGate":
            op_node = next((c for c in node if c.tag in (f"{_G}and", f"{_G}or", f"{_G}not")),
                           None)
            if op_node is None:
                raise TemplateError(f"{where}: a Boolean gate without and/or/not")
            operands = tuple(
                (r.get(f"{_G}ref"), r.get(f"{_G}use-as-complement", "false") == "true")
                for r in op_node.findall(f"{_G}gateReference"))
            gates.append(TemplateGate(gid, parent, "boolean", op=op_node.tag[len(_G):],
                                      operands=operands, adaptations=adapt))
        else:
            raise TemplateError(f"{where}: {kind} is not placed by adaptive gating "
                                "(rectangle, polygon and Boolean gates are); use --gating fixed")
    return AdaptiveTemplate(source, tuple(_ordered(gates, source)))


def _ordered(gates: list[TemplateGate], source: str) -> list[TemplateGate]:
    """Gates with parents and operands first (Gating-ML does not require file order)."""
    done: dict[str, TemplateGate] = {}
    pending = list(gates)
    while pending:
        progressed = False
        for gate in list(pending):
            needs = [gate.parent_id] if gate.parent_id else []
            needs += [ref for ref, _ in gate.operands]
            if all(n in done for n in needs):
                done[gate.gate_id] = gate
                pending.remove(gate)
                progressed = True
        if not progressed:
            names = ", ".join(g.gate_id for g in pending)
            raise TemplateError(f"{source}: gates {names} refer to gates that do not exist "
                                "(or to each other in a cycle)")
    return list(done.values())


@lru_cache(maxsize=64)
def cached_template(text: str, source: str) -> AdaptiveTemplate:
    """:func:`parse_adaptive_template`, kept per template text."""
    return parse_adaptive_template(text, source)


def declares_adaptation(path: str | Path) -> bool:
    """Whether a template file declares any adaptation (cheap text check)."""
    return ADAPT_NAMESPACE in Path(path).read_text(encoding="utf-8")
