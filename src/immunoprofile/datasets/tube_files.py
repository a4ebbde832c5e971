"""A simulated tube as files: the FCS file as a cytometer writes it (``$SPILLOVER``, ``$PnS``,
the simulation keyword), and its truth beside it (``NAME.truth.json``: the patient, the
instrument, the layout; ``NAME.labels.npz``: every event's population), which tests and
benchmarks hold gates to."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import flowio
import numpy as np

from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..io.fcs import SIMULATED_KEYWORD
from .simulate import CHANNEL_RANGE, TIMESTEP_S, SimulatedTube


def truth_paths(fcs_path: str | Path) -> tuple[Path, Path]:
    """Paths of the truth files written beside a simulated FCS file.

    Returns
    -------
    (Path, Path)
        ``NAME.truth.json`` (true cells/µL and settings) and ``NAME.labels.npz`` (the truth
        label of every event).
    """
    p = Path(fcs_path)
    return p.with_suffix(".truth.json"), p.with_suffix(".labels.npz")


def fcs_bytes(tube: SimulatedTube, *, channels: Sequence[str] | None = None,
              rename: Mapping[str, str] | None = None, spillover: bool = True,
              extra_keywords: Mapping[str, str] | None = None) -> bytes:
    """Encode a simulated tube as an FCS 3.1 file, as a BD FACSCanto writes it.

    Parameters
    ----------
    tube : SimulatedTube
    channels : sequence of str, optional
        Channels to write: all the tube's (``tube.channels``) when None; a subset makes a
        tube missing channels.
    rename : mapping, optional
        New ``$PnN`` names for some channels, as another instrument names them
        (e.g. ``{"FITC-A": "FL1-A"}``); ``$SPILLOVER`` uses the new names.
    spillover : bool
        Write ``$SPILLOVER`` (False makes a file without a spillover matrix).
    extra_keywords : mapping, optional
        More TEXT keywords.

    Returns
    -------
    bytes
    """
    all_channels = tube.channels
    channels = list(all_channels if channels is None else channels)
    idx = [all_channels.index(c) for c in channels]
    rename = dict(rename or {})
    names = [rename.get(all_channels[i], all_channels[i]) for i in idx]
    pns = [tube.pns[i] for i in idx]
    detectors = tube.fluorescence_channels
    fluor = [c for c in detectors if c in channels]
    spill_full = np.asarray(tube.truth["instrument"]["spillover"], dtype=float)
    keep = [detectors.index(c) for c in fluor]
    fluor = [rename.get(c, c) for c in fluor]
    spill = spill_full[np.ix_(keep, keep)]
    keywords = {
        "$CYT": tube.truth["instrument"]["name"],
        "$CYTSN": "SIMULATED",
        "$SRC": f"immunoprofile simulated {tube.truth['tube']} tube",
        "$TIMESTEP": str(TIMESTEP_S),
        "$FIL": f"{tube.truth['patient_id']}_{tube.truth['tube']}.fcs",
        SIMULATED_KEYWORD: "TRUE",
    }
    if fluor and spillover:
        values = ",".join(f"{v:.6g}" for v in spill.ravel())
        keywords["$SPILLOVER"] = f"{len(fluor)},{','.join(fluor)},{values}"
    for i in range(1, len(names) + 1):
        keywords[f"$P{i}R"] = str(CHANNEL_RANGE)
        if channels[i - 1] == "Time":
            keywords[f"$P{i}R"] = str(int(tube.events[:, -1].max()) + 1)
    if extra_keywords:
        keywords.update(extra_keywords)
    buffer = io.BytesIO()
    flowio.create_fcs(buffer, tube.events[:, idx].ravel(), channel_names=names,
                      opt_channel_names=pns, metadata_dict=keywords)
    return buffer.getvalue()


def write_tube(tube: SimulatedTube, path: str | Path, **fcs_options) -> Path:
    """Write a simulated tube as FCS 3.1 with its truth files beside it.

    Parameters
    ----------
    tube : SimulatedTube
    path : str or Path
        Destination ``.fcs`` file.
    **fcs_options
        Passed to :func:`fcs_bytes`.

    Returns
    -------
    Path
        The FCS file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, fcs_bytes(tube, **fcs_options))
    truth_json, labels_npz = truth_paths(path)
    atomic_write_text(truth_json, json.dumps(tube.truth, indent=1) + "\n")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=tube.labels)
    atomic_write_bytes(labels_npz, buffer.getvalue())
    return path


def read_truth(fcs_path: str | Path) -> tuple[dict, np.ndarray]:
    """Read the truth written beside a simulated FCS file.

    Returns
    -------
    (dict, numpy.ndarray)
        The truth dictionary and the label code of every event.
    """
    truth_json, labels_npz = truth_paths(fcs_path)
    truth = json.loads(Path(truth_json).read_text())
    with np.load(labels_npz) as data:
        labels = data["labels"]
    return truth, labels
