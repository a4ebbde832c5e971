"""Compiled programs as data files, so a run need not re-parse and re-lower its templates.

Lowering a strategy needs FlowKit (to parse Gating-ML and to map bounds through its
transforms); a lowered :class:`~.program.Program` is plain numbers and names. It is saved
as JSON — never pickle — under a key that names everything it depends on: the fitted
template text, the FlowKit and flowutils versions whose transforms the bounds were mapped
through, and this package's version and program format. Loading a damaged or foreign file
gives ``None`` (the caller compiles afresh), never a wrong plan.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write_text
from .program import CompMatrix, GateProgram, Program, Test, ValueRef
from .thresholds import RangeTest
from .transforms import TransformSpec

#: Bumped whenever the meaning of a stored program changes.
FORMAT = 4


def cache_dir() -> Path:
    """Where compiled programs are kept: ``programs/`` in the cache
    (``$IMMUNOPROFILE_CACHE``, else ``~/.cache/immunoprofile``)."""
    from .._compile.aot import cache_root

    return cache_root() / "programs"


@functools.cache
def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def program_key(source_text: str) -> str:
    """Cache key of the program compiled from ``source_text`` (fitted Gating-ML)."""
    parts = [source_text, str(FORMAT), _version("immunoprofile"), _version("flowkit"),
             _version("flowutils")]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _array(a) -> list | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def _packed(a: np.ndarray) -> str:
    """A long float64 array as base64 of its little-endian bytes (exact, and quick to
    read back)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def _unpacked(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


def _test(t: Test | None) -> dict | None:
    if t is None:
        return None
    mapped = None
    if t.mapped is not None:
        mapped = {"intervals": [list(iv) for iv in t.mapped.intervals],
                  "neg_inf": t.mapped.neg_inf, "pos_inf": t.mapped.pos_inf,
                  "nan": t.mapped.nan, "domain": t.mapped.domain}
    return {"value": t.value, "xform": t.xform, "lo": t.lo, "hi": t.hi, "mapped": mapped}


def _untest(d: dict | None) -> Test | None:
    if d is None:
        return None
    mapped = None
    if d["mapped"] is not None:
        m = d["mapped"]
        mapped = RangeTest(tuple((float(a), float(b)) for a, b in m["intervals"]),
                           bool(m["neg_inf"]), bool(m["pos_inf"]), bool(m["nan"]),
                           float(m["domain"]))
    return Test(int(d["value"]), int(d["xform"]), d["lo"], d["hi"], mapped)


def program_to_json(program: Program) -> str:
    """Serialise a program (floats round-trip exactly through JSON's ``repr``)."""
    from .pack import brackets_of

    brackets = brackets_of(program)
    gates = []
    for g in program.gates:
        gates.append({
            "key": [g.key[0], list(g.key[1])], "kind": g.kind, "parent": g.parent,
            "complement": g.complement, "tests": [_test(t) for t in g.tests],
            "axes": g.axes, "vertices": _array(g.vertices), "mean": _array(g.mean),
            "inverse": _array(g.inverse), "distance_square": g.distance_square,
            "refs": [[i, c] for i, c in g.refs], "bool_op": g.bool_op,
            "gate_type": g.gate_type, "exact": g.exact,
            "y_tests": [_test(t) for t in g.y_tests],
            "edge_lt": [_test(t) for t in g.edge_lt], "edge_kinds": g.edge_kinds,
            "edge_dirs": None if g.edge_dirs is None else g.edge_dirs.tolist(),
            "slab_left": _array(g.slab_left), "slab_right": _array(g.slab_right),
            "slab_domain": g.slab_domain,
        })
    return json.dumps({
        "format": FORMAT,
        "gates": gates,
        "values": [{"kind": v.kind, "label": v.label, "comp_ref": v.comp_ref,
                    "ratio": list(v.ratio)} for v in program.values],
        "transforms": [{"kind": t.kind, "params": _array(t.params), "lut_x": _array(t.lut_x),
                        "lut_y": _array(t.lut_y), "domain": t.domain}
                       for t in program.transforms],
        "axes": [list(a) for a in program.axes],
        "comp_matrices": {ref: {"matrix": _array(m.matrix), "detectors": m.detectors,
                                "fluorochromes": m.fluorochromes}
                          for ref, m in program.comp_matrices.items()},
        "brackets": {"start": np.asarray(brackets[0]).tolist(), "pos": _packed(brackets[1]),
                     "neg": _packed(brackets[2])},
    })


def _arr(v, dtype=np.float64) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=dtype)


def program_from_json(text: str) -> Program:
    """Rebuild a program saved by :func:`program_to_json`.

    Raises
    ------
    ValueError
        Not a stored program of this format.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not an immunoprofile program of this format")
    gates = []
    for g in data["gates"]:
        gates.append(GateProgram(
            key=(g["key"][0], tuple(g["key"][1])), kind=int(g["kind"]),
            parent=int(g["parent"]), complement=bool(g["complement"]),
            tests=[_untest(t) for t in g["tests"]], axes=[int(a) for a in g["axes"]],
            vertices=_arr(g["vertices"]), mean=_arr(g["mean"]), inverse=_arr(g["inverse"]),
            distance_square=float(g["distance_square"]),
            refs=[(int(i), bool(c)) for i, c in g["refs"]], bool_op=int(g["bool_op"]),
            gate_type=g["gate_type"], exact=bool(g["exact"]),
            y_tests=[_untest(t) for t in g["y_tests"]],
            edge_lt=[_untest(t) for t in g["edge_lt"]],
            edge_kinds=[int(k) for k in g["edge_kinds"]],
            edge_dirs=_arr(g["edge_dirs"], np.int64),
            slab_left=_arr(g["slab_left"]), slab_right=_arr(g["slab_right"]),
            slab_domain=float(g["slab_domain"]),
        ))
    values = [ValueRef(int(v["kind"]), v["label"], v["comp_ref"], tuple(v["ratio"]))
              for v in data["values"]]
    transforms = []
    for t in data["transforms"]:
        transforms.append(TransformSpec(int(t["kind"]), _arr(t["params"]),
                                        _arr(t["lut_x"]), _arr(t["lut_y"]),
                                        domain=float(t["domain"])))
    matrices = {ref: CompMatrix(_arr(m["matrix"]), list(m["detectors"]),
                                list(m["fluorochromes"]))
                for ref, m in data["comp_matrices"].items()}
    b = data["brackets"]
    brackets = (np.asarray(b["start"], dtype=np.int64), _unpacked(b["pos"]),
                _unpacked(b["neg"]))
    return Program(gates, values, transforms, [tuple(a) for a in data["axes"]], matrices,
                   brackets)


def load_program(key: str) -> Program | None:
    """The stored program for ``key``, or None (absent, unreadable, or another format)."""
    path = cache_dir() / f"{key}.json"
    try:
        return program_from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_program(key: str, program: Program) -> None:
    """Store a program (atomically); a cache that cannot be written is skipped silently."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{key}.json", program_to_json(program))
    except OSError:
        pass
