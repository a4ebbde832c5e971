"""A lowered gating strategy as plain data: values, tests, gates and compensation matrices
(:class:`Program`), with nothing of FlowKit in it. :mod:`.lower` makes one from a FlowKit
strategy, :mod:`.plain` from gates placed on a tube; :mod:`.program_store` keeps it on disk;
:mod:`.bind` resolves it against a tube's channels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .thresholds import RangeTest
from .transforms import (
    TransformSpec,
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
    #: the kernel's polygon test, computed once when lowering (see :func:`.pack.bracket_tables`)
    brackets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
