"""Holding gates to the truth: F1 per gate and counts against known concentrations.

For tubes that carry their truth — simulated ones (``NAME.labels.npz``,
``NAME.truth.json`` from :mod:`immunoprofile.datasets.simulate`) or real tubes with manual
labels — this module gates a tube with either gating mode, keeps every event's membership,
and scores each gate. It is what ``tests/integration/test_adaptive_envelope.py`` and
``benchmarks/bench_adaptive.py`` run; a lab can run it on its own labelled files to see how
a template of its own does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gating.adaptive_gating import place_tube, placed_membership
from ..gating.compiled_gating import gate_tube_compiled
from ..gating.panels import Panel, detect_panel
from ..gating.placement import GatePlacement
from ..io.fcs import read_tube


def f1_score(predicted: np.ndarray, truth: np.ndarray) -> float:
    """F1 of a gate's events against the true ones.

    0 when one of them is empty; 1 when both are (a population absent from the tube — a
    patient without B cells — that the gate rightly finds empty).

    Parameters
    ----------
    predicted, truth : numpy.ndarray
        bool per event.
    """
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    if tp == fp == fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def count_tolerance(true_per_ul: float, expected_events: float,
                    expected_bead_events: float) -> float:
    """Allowed error of a bead-based count: max(5 %, 3 counting SD), cells/µL.

    The counting SD is the Poisson error of the population's and the beads' expected
    events: ``true × sqrt(1/events + 1/bead events)``.
    """
    if expected_events <= 0 or expected_bead_events <= 0:
        return math.inf
    sigma = true_per_ul * math.sqrt(1 / expected_events + 1 / expected_bead_events)
    return max(3 * sigma, 0.05 * true_per_ul)


@dataclass
class GatedMembership:
    """Every event's membership of every gate of one tube, and (adaptive) placements."""

    panel: Panel
    membership: dict[str, np.ndarray]
    placements: list[GatePlacement] | None


def gate_membership(path: str | Path, gating: str = "adaptive",
                    templates: str | None = None, tube: str | None = None) -> GatedMembership:
    """Gate one file and keep every event's membership (bool per gate, parent-ANDed).

    Parameters
    ----------
    path : str or Path
    gating : {"adaptive", "fixed"}
    templates : str, optional
        Template folder (default: the shipped ones of the mode).
    tube : str, optional
        The panel's tube name; detected from the markers when omitted.
    """
    from ..gating.templates import adaptive_template_dir

    fcs = read_tube(path)
    panel = detect_panel(fcs.markers, expected=tube, source=Path(path).name)
    if gating == "adaptive":
        folder = templates if templates is not None else str(adaptive_template_dir())
        placement = place_tube(fcs, panel, folder)
        return GatedMembership(panel, placed_membership(placement, fcs.events),
                               placement.reports)
    gated = gate_tube_compiled(fcs, panel, templates)
    return GatedMembership(panel, {g: gated.membership(g) for g in gated.gate_ids}, None)


#: The tube's own population, whose count is held to the truth, by tube.
_POPULATION_OF = {"nk": "NK", "cd4": "CD4pos", "cd8": "CD8pos"}


#: A gate's F1 is held to the target (``scored_f1``) only where the truth has at least this
#: many events of its population: F1 of a handful of events is one event's noise.
MIN_EVENTS_FOR_F1 = 100


def evaluate_simulated_batch(folder: str | Path, gating: str = "adaptive",
                             templates: str | None = None, result=None) -> list[dict]:
    """Gate a folder of simulated tubes (with manifest) and score every tube.

    Parameters
    ----------
    folder : str or Path
        Written by :func:`immunoprofile.datasets.envelope.write_envelope` or ``write_cohort``.
    gating : {"adaptive", "fixed"}
    templates : str, optional
    result : BatchResult, optional
        The folder already gated this way (``gate_batch(folder, gating=gating,
        templates=templates)``), to score without gating it again.

    Returns
    -------
    list of dict
        One record per tube: ``sample_id``, ``tube``, ``f1`` (gate → F1 against the truth
        labels), ``population``, ``measured`` and ``true`` cells/µL of the tube's own
        population, ``tolerance`` (:func:`count_tolerance`), ``within``, ``flags`` (the
        tube's QC flags), ``uncertain`` (whether a ``GATE_UNCERTAIN`` flag is among them)
        and ``error`` (the failure reason of a tube that was not counted); ``counts``
        holds the same four numbers (measured, true, tolerance, within) for every gate the
        tube's panel reports and for its T-cell gate, with ``true_events``,
        ``perfect_gate`` and ``within_perfect_gate`` (as below, per gate), and
        ``all_within`` whether every one is within (a TBNK tube reports five populations);
        ``scored_f1`` is ``f1`` of the gates whose true population holds at least
        :data:`MIN_EVENTS_FOR_F1` events.
    """
    from ..gating.panels import default_panels
    from ..pipeline.batch import gate_batch
    from .simulate import GATE_TRUTH, LABEL_CODE
    from .tube_files import read_truth

    folder = Path(folder)
    if result is None:
        result = gate_batch(folder, gating=gating, templates=templates)
    pops = {(r["sample_id"], r["population"]): r
            for r in result.tables["populations"].rows()}
    flags = {r["sample_id"]: r["qc_flags"] for r in result.tables["samples"].rows()}
    errors = {Path(r["file"]).stem: r["error"] for r in result.tables["errors"].rows()}
    records = []
    for path in sorted(folder.glob("*.fcs")):
        sample_id = path.stem
        truth, labels = read_truth(path)
        tube = truth["tube"]
        panel = default_panels()[tube]
        population = _POPULATION_OF.get(tube, panel.population)
        record = {"sample_id": sample_id, "tube": tube, "population": population,
                  "f1": {}, "scored_f1": {}, "counts": {}, "measured": math.nan,
                  "true": math.nan, "tolerance": math.nan, "within": False,
                  "all_within": False, "perfect_gate": math.nan,
                  "within_perfect_gate": False, "flags": flags.get(sample_id, ""),
                  "error": errors.get(sample_id, "")}
        record["uncertain"] = "GATE_UNCERTAIN" in record["flags"]
        if record["error"]:
            records.append(record)
            continue
        gated = gate_membership(path, gating, templates, tube)
        for gate_id, member in gated.membership.items():
            if gate_id in GATE_TRUTH:
                codes = [LABEL_CODE[name] for name in GATE_TRUTH[gate_id]]
                record["f1"][gate_id] = f1_score(member, np.isin(labels, codes))
        record["scored_f1"] = {
            g: f for g, f in record["f1"].items()
            if sum(truth["label_counts"][n] for n in GATE_TRUTH[g]) >= MIN_EVENTS_FOR_F1}
        expected = truth["expected_events"]
        counts_of = {}
        for gate_id in dict.fromkeys((population, panel.t_cell_gate,
                                      *(g for g, _ in panel.reports))):
            true = sum(truth["cells_per_ul"][name] for name in GATE_TRUTH[gate_id])
            measured = float(pops[(sample_id, gate_id)]["cells_per_ul"])
            tolerance = count_tolerance(
                true, sum(expected[name] for name in GATE_TRUTH[gate_id]),
                expected.get("bead", 0.0))
            label_counts = truth["label_counts"]
            events = sum(label_counts[name] for name in GATE_TRUTH[gate_id])
            beads = label_counts.get("bead", 0)
            perfect = events / beads * truth["beads_per_test"] / truth["volume_ul"] \
                if beads else math.nan
            counts_of[gate_id] = {
                "measured": measured, "true": true, "tolerance": tolerance,
                "within": abs(measured - true) <= tolerance, "true_events": events,
                "perfect_gate": perfect,
                "within_perfect_gate": bool(abs(measured - perfect) <= count_tolerance(
                    perfect, events, beads))}
        record["counts"] = counts_of
        record["all_within"] = all(c["within"] for c in counts_of.values())
        record.update({k: counts_of[population][k]
                       for k in ("measured", "true", "tolerance", "within")})
        true = record["true"]
        # The count a perfect gate gives on this tube: its true events of the population
        # over its true bead events (the tube's own Poisson draw, which no gate can undo).
        counts = truth["label_counts"]
        events = sum(counts[name] for name in GATE_TRUTH[population])
        perfect = events / counts["bead"] * truth["beads_per_test"] / truth["volume_ul"] \
            if counts.get("bead") else math.nan
        record["perfect_gate"] = perfect
        record["within_perfect_gate"] = bool(
            abs(record["measured"] - perfect) <= count_tolerance(perfect, events,
                                                                 counts.get("bead", 0)))
        records.append(record)
    return records


def covered(record: dict, min_f1: float = 0.95, against: str = "within") -> bool:
    """A tube is right (every gate's F1 ≥ ``min_f1`` and its count within tolerance) or
    flagged ``GATE_UNCERTAIN`` — what adaptive gating promises.

    ``against="within"`` holds the count to the blood's true concentration (by chance
    alone, about 0.3 % of perfectly gated tubes lie beyond 3 counting SD of it);
    ``"within_perfect_gate"`` to the count a perfect gate gives on the same tube.
    """
    right = not record["error"] and record[against] and \
        all(f >= min_f1 for f in record["f1"].values())
    return right or record["uncertain"]
