"""Binding a program to one tube's layout: which column holds each channel, how it is decoded
(``$PnE``, ``$PnG``, bit masks), and the compensation of the file's own spillover or
the template's matrix as weights over raw channels (:func:`bind`). The result is reused for
tubes with the same channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.events import EventData
from . import opcodes as K
from .pack import KernelArguments, TubeArrays, program_arrays
from .program import CompMatrix, Program


@dataclass
class Bound:
    """Kernel arrays for one tube layout (reused for tubes with the same channels)."""

    args: KernelArguments
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


def compensation_matrix(ref: str | None, program: Program | None,
                        events: EventData) -> CompMatrix | None:
    """The matrix a dimension's ``compensation-ref`` names, for one tube: None for none
    (or ``FCS`` on a file without a spillover), the file's own spillover parsed as FlowKit
    parses it for ``FCS``, else the template's matrix of that name (``program`` then
    holds it)."""
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
                matrices[ref.comp_ref] = compensation_matrix(ref.comp_ref, program, events)
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
    tube = TubeArrays(
        cols, events.mask[cols].astype(np.uint64), events.scale[cols], events.decades[cols],
        events.log0[cols], events.value_range[cols], events.gain[cols],
        np.array(val_kind, dtype=np.int64), rows, np.array(val_a, dtype=np.int64),
        np.array(val_b, dtype=np.int64), np.array(coef_start, dtype=np.int64),
        np.array(coef_chan, dtype=np.int64), np.array(coef_w, dtype=np.float64), val_ratio)
    return Bound(args=KernelArguments(tube, program_arrays(program)),
                 n_gates=len(program.gates))


def _inverse(matrix) -> np.ndarray:
    # flowutils compensates with solve(S.T, X.T).T, i.e. X @ inv(S).
    return np.linalg.inv(np.asarray(matrix.matrix, dtype=np.float64))
