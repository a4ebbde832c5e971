"""Per-sample and per-patient tables: populations, tube summaries and immune profiles.

Every number here comes from the counting kernels in :mod:`immunoprofile.counting`: this
module only lines the inputs up as arrays (one value per row) and the results as tables
(:class:`~immunoprofile.io.table.Table`: written as CSV without pandas, and turned into
DataFrames on request).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..counting import (
    cd4_cd8_ratio,
    dual_platform_cells_per_ul,
    poisson_cv,
    ratio,
    relative_spread,
    single_platform_cells_per_ul,
)
from ..counting.qc import (
    alc_checks,
    beyond_counting_error,
    implied_volume_ul,
    lymphosum_flag,
    patient_flags,
    tube_flags,
)
from ..gating.panel_spec import PanelQC
from ..gating.panels import Panel, default_panels, within_gate
from ..io.table import Decimals, Significant, Table
from .columns import TUBE_COLUMNS

POPULATION_COLUMNS = [
    "sample_id", "patient_id", "tube", "population", "events", "parent_events", "pct_parent",
    "pct_lymphocytes", "cells_per_ul", "cells_per_ul_dual", "count_cv",
]
SAMPLE_COLUMNS = [
    "sample_id", "file", "patient_id", "tube", "events", "bead_events", "lymphocyte_events",
    "population", "population_events", "beads_per_test", "volume_ul", "alc",
    "implied_volume_ul", "qc_flags",
]
POPULATION_KINDS = dict(zip(POPULATION_COLUMNS, ["str"] * 4 + ["int"] * 2 + ["float"] * 5,
                            strict=True))
SAMPLE_KINDS = dict(zip(SAMPLE_COLUMNS, ["str"] * 4 + ["int"] * 3 + ["str", "int"]
                        + ["float"] * 4 + ["str"], strict=True))
PROFILE_COLUMNS = [
    "patient_id", "nk_per_ul", "cd4_per_ul", "cd8_per_ul", "cd3_per_ul", "lymphocytes_per_ul",
    "cd4_cd8_ratio", "qc_flags",
    "nk_per_ul_dual", "cd4_per_ul_dual", "cd8_per_ul_dual", "cd3_per_ul_dual",
    "lymphocytes_per_ul_dual", "cd4_cd8_ratio_dual", "alc",
    "cd3_per_ul_nk_tube", "cd3_per_ul_cd4_tube", "cd3_per_ul_cd8_tube", "cd3_tube_spread",
    "lymphocytes_per_ul_nk_tube", "lymphocytes_per_ul_cd4_tube", "lymphocytes_per_ul_cd8_tube",
    "lymphocytes_tube_spread", "cd4_plus_cd8_to_cd3",
]
#: The digits each computed number is written with (the README's output tables say the
#: same): counts in cells/µL to 0.1 (two significant digits below 1 cell/µL), ratios,
#: percentages, spreads and CVs to 4 significant digits. Exact values are kept for what is
#: computed from them (ratios, flags); the manifest's inputs are written as given.
CELLS_PER_UL = Decimals(1)
FOUR_DIGITS = Significant(4)
POPULATION_PRECISION = {"pct_parent": FOUR_DIGITS, "pct_lymphocytes": FOUR_DIGITS,
                        "cells_per_ul": CELLS_PER_UL, "cells_per_ul_dual": CELLS_PER_UL,
                        "count_cv": FOUR_DIGITS}
PROFILE_PRECISION = {c: CELLS_PER_UL if "_per_ul" in c else FOUR_DIGITS
                     for c in PROFILE_COLUMNS if c not in ("patient_id", "qc_flags", "alc")}


@dataclass
class CountedTube:
    """One gated tube with its events per gate, ready for the tables.

    Attributes
    ----------
    sample_id, file, patient_id, tube : str
    gate_ids : list of str
        Gates in hierarchy order.
    parents : list of str or None
    gate_events : numpy.ndarray
        int64, events in each gate.
    events : int
        Events in the file.
    beads_per_test, volume_ul, alc : float
        Counting inputs (beads, µL, ×10⁹/L); NaN when not given.
    has_spillover : bool
    uncertain_gates : tuple of str
        Gates adaptive gating could not place with confidence.
    """

    sample_id: str
    file: str
    patient_id: str
    tube: str
    gate_ids: list[str]
    parents: list[str | None]
    gate_events: np.ndarray
    events: int
    beads_per_test: float
    volume_ul: float
    alc: float
    has_spillover: bool = True
    keywords: dict | None = None
    #: Gates whose adaptive placement was uncertain (flagged ``GATE_UNCERTAIN:<gate>``).
    uncertain_gates: tuple[str, ...] = ()
    #: The tube's panel; None: the shipped tube named ``tube``.
    panel: Panel | None = None
    #: A wider panel's tube the file carries every marker of (``WIDER_PANEL:<tube>``).
    wider_panel: str | None = None
    #: Known markers the file carries and its tube does not use (``UNUSED_MARKERS``).
    unused_markers: tuple[str, ...] = ()
    #: Events two lymphosum gates both hold, ``(gate, gate, events)`` per pair in the tube
    #: (``LYMPHOSUM_OVERLAP``).
    shared_events: tuple[tuple[str, str, int], ...] = ()

    @property
    def tube_panel(self) -> Panel:
        """The tube's panel: the gates its counts are read from, what it reports."""
        return self.panel if self.panel is not None else default_panels()[self.tube]

    def events_in(self, gate_id: str) -> int:
        """Events in one gate (0 when the template has no such gate)."""
        if gate_id not in self.gate_ids:
            return 0
        return int(self.gate_events[self.gate_ids.index(gate_id)])

    def under_lymphocytes(self) -> list[bool]:
        """For each gate, whether it is the lymphocyte gate or lies within it."""
        parents = dict(zip(self.gate_ids, self.parents, strict=True))
        lymphocytes = self.tube_panel.lymphocyte_gate
        return [within_gate(gate_id, parents, lymphocytes) for gate_id in self.gate_ids]


def population_table(tubes: Sequence[CountedTube]) -> Table:
    """One row per sample × gate with events, percentages and absolute counts.

    Parameters
    ----------
    tubes : sequence of CountedTube

    Returns
    -------
    Table
        Columns :data:`POPULATION_COLUMNS`. ``cells_per_ul`` (single-platform, cells/µL)
        and ``cells_per_ul_dual`` (dual-platform, cells/µL) are given for the lymphocyte
        gate and the gates within it; ``count_cv`` is the Poisson CV of the single-platform
        count; percentages are in %.
    """
    rows: dict[str, list] = {c: [] for c in POPULATION_COLUMNS}
    inputs: dict[str, list] = {k: [] for k in ("beads", "lymph", "bpt", "vol", "alc", "inside")}
    for tube in tubes:
        lymph = tube.events_in(tube.tube_panel.lymphocyte_gate)
        beads = tube.events_in(tube.tube_panel.bead_gate)
        for gate_id, parent, events, inside in zip(tube.gate_ids, tube.parents, tube.gate_events,
                                                   tube.under_lymphocytes(), strict=True):
            rows["sample_id"].append(tube.sample_id)
            rows["patient_id"].append(tube.patient_id)
            rows["tube"].append(tube.tube)
            rows["population"].append(gate_id)
            rows["events"].append(int(events))
            rows["parent_events"].append(tube.events if parent is None
                                         else tube.events_in(parent))
            inputs["beads"].append(beads)
            inputs["lymph"].append(lymph)
            inputs["bpt"].append(tube.beads_per_test)
            inputs["vol"].append(tube.volume_ul)
            inputs["alc"].append(tube.alc)
            inputs["inside"].append(inside)
    events = np.asarray(rows["events"], dtype=np.float64)
    inside = np.asarray(inputs["inside"], dtype=bool)
    outside = ~inside
    rows["pct_parent"] = list(100.0 * ratio(events, rows["parent_events"]))
    pct_lymph = 100.0 * ratio(events, inputs["lymph"])
    cells = single_platform_cells_per_ul(events, inputs["beads"], inputs["bpt"], inputs["vol"])
    dual = dual_platform_cells_per_ul(events, inputs["lymph"], inputs["alc"])
    cv = poisson_cv(events, inputs["beads"])
    for arr in (pct_lymph, cells, dual, cv):
        arr[outside] = np.nan
    cv[np.isnan(cells)] = np.nan
    rows["pct_lymphocytes"] = list(pct_lymph)
    rows["cells_per_ul"] = list(cells)
    rows["cells_per_ul_dual"] = list(dual)
    rows["count_cv"] = list(cv)
    return Table(rows, POPULATION_KINDS, POPULATION_PRECISION)


def sample_flags(tube: CountedTube) -> list[str]:
    """QC flags of one tube (the rules: :func:`immunoprofile.counting.qc.tube_flags`)."""
    panel = tube.tube_panel
    return tube_flags(bead_events=tube.events_in(panel.bead_gate),
                      lymphocyte_events=tube.events_in(panel.lymphocyte_gate),
                      population_events=tube.events_in(panel.population),
                      events=tube.events, beads_counted=not np.isnan(tube.beads_per_test),
                      has_spillover=tube.has_spillover, uncertain_gates=tube.uncertain_gates,
                      min_bead_events=panel.qc.bead_events,
                      min_lymphocyte_events=panel.qc.lymphocyte_events_warn,
                      lymphocyte_event_floor=panel.qc.lymphocyte_events_fail,
                      reported_events=_reported_events(tube),
                      wider_panel=tube.wider_panel, unused_markers=tube.unused_markers,
                      shared_events=tube.shared_events,
                      max_shared_pct=panel.qc.lymphosum_overlap_pct)


def _reported_events(tube: CountedTube) -> dict[str, int] | None:
    """Gate → events of each population a tube reports when it reports several (a TBNK
    tube); None for a tube reporting one (the study's): its population is checked."""
    panel = tube.tube_panel
    gates = dict.fromkeys(g for g, _ in panel.reports)
    if len(gates) < 2:
        return None
    return {gate: tube.events_in(gate) for gate in gates}


def _alc_inputs(patient_ids, lymphocyte_events, bead_events, beads_per_test, volume_ul,
                alc) -> tuple[np.ndarray, set[str]]:
    """:func:`~immunoprofile.counting.qc.alc_checks` of table columns (lists)."""
    return alc_checks(list(patient_ids), *(np.asarray(list(v), dtype=np.float64) for v in (
        lymphocyte_events, bead_events, beads_per_test, volume_ul, alc)))


def sample_table(tubes: Sequence[CountedTube]) -> Table:
    """One row per tube: events, bead and lymphocyte events, its population, the blood
    volume the ALC implies (µL), QC flags (``VOLUME_DISAGREEMENT`` compares the tube
    with the patient's other tubes: see :func:`~immunoprofile.counting.qc.alc_checks`)."""
    lymph = [t.events_in(t.tube_panel.lymphocyte_gate) for t in tubes]
    beads = [t.events_in(t.tube_panel.bead_gate) for t in tubes]
    per_test, alc = [t.beads_per_test for t in tubes], [t.alc for t in tubes]
    implied = implied_volume_ul(lymph, beads, per_test, alc) if tubes else np.zeros(0)
    volume_flags, _ = _alc_inputs([t.patient_id for t in tubes], lymph, beads, per_test,
                                  [t.volume_ul for t in tubes], alc)
    records = []
    for i, tube in enumerate(tubes):
        population = tube.tube_panel.population
        flags = sample_flags(tube) + (["VOLUME_DISAGREEMENT"] if volume_flags[i] else [])
        records.append({
            "sample_id": tube.sample_id, "file": tube.file, "patient_id": tube.patient_id,
            "tube": tube.tube, "events": tube.events, "bead_events": beads[i],
            "lymphocyte_events": lymph[i], "population": population,
            "population_events": tube.events_in(population),
            "beads_per_test": tube.beads_per_test, "volume_ul": tube.volume_ul,
            "alc": tube.alc, "implied_volume_ul": float(implied[i]),
            "qc_flags": ";".join(flags),
        })
    table = Table.from_records(records, SAMPLE_KINDS)
    if any(tube.keywords is not None for tube in tubes):  # only when asked: they may be PHI
        table.add_column("fcs_keywords", [json.dumps(t.keywords, sort_keys=True, default=str)
                                          if t.keywords is not None else "" for t in tubes],
                         "str")
    return table


def _lookup(populations: Table, column: str) -> dict[tuple[str, str, str], float]:
    keys = zip(populations["patient_id"], populations["tube"], populations["population"],
               strict=True)
    return dict(zip(keys, (float(v) for v in populations[column]), strict=True))


def profile_table(populations: Table, samples: Table, patients: Sequence[str],
                  panels: Mapping[str, Panel] | None = None,
                  named_tubes: Mapping[str, Iterable[str]] | None = None) -> Table:
    """One row per patient: the immune profile and its QC flags.

    Parameters
    ----------
    populations : Table
        From :func:`population_table`.
    samples : Table
        From :func:`sample_table`.
    patients : sequence of str
        Every patient of the batch, failed ones included (their values are empty).
    panels : mapping, optional
        Tube name → its :class:`~immunoprofile.gating.panels.Panel` for every tube the
        batch may hold (the shipped panels when None): what each tube reports, and which
        tubes make a complete set.
    named_tubes : mapping, optional
        Patient → the tubes the manifest names for them, counted or failed: a patient's
        panel is known from these even when none of their tubes was counted (a TBNK
        patient whose one tube failed lacks ``tbnk``, not the study's three tubes).

    Returns
    -------
    Table
        Columns :data:`PROFILE_COLUMNS`: NK, CD4+ T, CD8+ T from their own tubes, CD3+ and
        lymphocytes as the mean over the patient's tubes (cells/µL), the CD4/CD8 ratio,
        dual-platform twins (``*_dual``), per-tube CD3+ and lymphocyte counts of the
        study's tubes with their spread, and ``qc_flags`` (``;``-separated). A column a
        lab's panel reports that is not among them (``cd19_per_ul``) follows, with its
        ``*_dual`` twin, when the batch holds such a tube.
    """
    panels = panels if panels is not None else default_panels()
    single = _lookup(populations, "cells_per_ul")
    dual = _lookup(populations, "cells_per_ul_dual")
    tube_rows: dict[str, list[dict]] = {}
    for row in samples.rows():
        tube_rows.setdefault(row["patient_id"], []).append(row)
    n = len(patients)
    out: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in PROFILE_COLUMNS
                                  if c not in ("patient_id", "qc_flags")}
    # the tubes of a lab's panel in this batch, and the columns they add
    in_batch = set(samples["tube"])  # in the panels' order: the first reporting tube wins
    other_tubes = [t for t in panels if t in in_batch and t not in TUBE_COLUMNS]
    extra: list[str] = []
    for tube in other_tubes:
        for _, column in panels[tube].reports:
            for name in (column, column + "_dual"):
                if name not in out:
                    out[name] = np.full(n, np.nan)
                    extra.append(name)
    checks = [c for c in ("lymphosum_pct", "cd3_pct_tube_difference")
              if any(_has_check(panels, t, c) for t in other_tubes)]
    for name in checks:
        out[name] = np.full(n, np.nan)
    extra += checks
    pct = _lookup(populations, "pct_lymphocytes")
    cv = _lookup(populations, "count_cv")
    lymph_events = {(r["patient_id"], r["tube"]): float(r["lymphocyte_events"])
                    for r in samples.rows()}
    beyond: dict[str, list[bool]] = {"cd3": [True] * n, "lymph": [True] * n,
                                     "cd3_pct": [False] * n}
    cd3_values: list[list[float]] = [[] for _ in patients]
    lymph_values: list[list[float]] = [[] for _ in patients]
    cd3_dual_values: list[list[float]] = [[] for _ in patients]
    lymph_dual_values: list[list[float]] = [[] for _ in patients]
    cd3_t_values: list[list[float]] = [[] for _ in patients]  # tubes giving CD4+ or CD8+
    tube_rows_cd3, tube_rows_lymph, tube_group = [], [], []
    for p, patient in enumerate(patients):
        present = {r["tube"] for r in tube_rows.get(patient, [])}
        # the study's tubes a panel set holds (a lab's study.yaml may leave one out)
        tubes = [*(t for t in TUBE_COLUMNS if t in panels),
                 *(t for t in other_tubes if t in present)]
        for tube in tubes:
            panel = panels[tube]
            cd3 = single.get((patient, tube, panel.t_cell_gate), np.nan)
            lymph = single.get((patient, tube, panel.lymphocyte_gate), np.nan)
            for gate_id, column in reported_columns(panel, tube):
                # both methods from one tube: the first that gives either
                if math.isnan(out[column][p]) and math.isnan(out[column + "_dual"][p]):
                    out[column][p] = single.get((patient, tube, gate_id), np.nan)
                    out[column + "_dual"][p] = dual.get((patient, tube, gate_id), np.nan)
            if tube in TUBE_COLUMNS:
                out[f"cd3_per_ul_{tube}_tube"][p] = cd3
                out[f"lymphocytes_per_ul_{tube}_tube"][p] = lymph
            if {c for _, c in reported_columns(panel, tube)} & {"cd4_per_ul", "cd8_per_ul"}:
                cd3_t_values[p].append(cd3)
            cd3_values[p].append(cd3)
            lymph_values[p].append(lymph)
            cd3_dual_values[p].append(dual.get((patient, tube, panel.t_cell_gate), np.nan))
            lymph_dual_values[p].append(dual.get((patient, tube, panel.lymphocyte_gate),
                                                 np.nan))
            tube_rows_cd3.append(cd3)
            tube_rows_lymph.append(lymph)
            tube_group.append(p)
        mine = [t for t in tubes if t in present]
        qc = patient_qc(present, panels)
        if qc is not None and qc.counting_sds > 0:
            for key, gate_of in (("cd3", lambda q: q.t_cell_gate),
                                 ("lymph", lambda q: q.lymphocyte_gate)):
                values = [single.get((patient, t, gate_of(panels[t])), np.nan) for t in mine]
                sds = [v * cv.get((patient, t, gate_of(panels[t])), np.nan)
                       for v, t in zip(values, mine, strict=True)]
                limit = _spread_limit(qc, values)
                beyond[key][p] = beyond_counting_error(values, sds, limit, qc.counting_sds)
        paired = _paired_tubes([t for t in panels if t in present], panels)
        if "cd3_pct_tube_difference" in out and len(paired) > 1:
            pair_qc = patient_qc(present, panels, "CD3_PCT_TUBE_DISAGREEMENT")
            values = [pct.get((patient, t, panels[t].t_cell_gate), np.nan) for t in paired]
            sds = [_binomial_sd_points(v, lymph_events.get((patient, t), np.nan))
                   for v, t in zip(values, paired, strict=True)]
            known_values = [v for v in values if not math.isnan(v)]
            if len(known_values) > 1:
                out["cd3_pct_tube_difference"][p] = max(known_values) - min(known_values)
            beyond["cd3_pct"][p] = beyond_counting_error(values, sds, pair_qc.cd3_pct_points,
                                                         pair_qc.counting_sds)
        if "lymphosum_pct" in out:
            out["lymphosum_pct"][p] = _lymphosum(patient, mine, panels, pct)
        out["cd3_per_ul_dual"][p] = _nanmean(cd3_dual_values[p])
        out["lymphocytes_per_ul_dual"][p] = _nanmean(lymph_dual_values[p])
        alcs = [float(r["alc"]) for r in tube_rows.get(patient, [])
                if not math.isnan(float(r["alc"]))]
        out["alc"][p] = alcs[0] if alcs else np.nan
    out["cd3_per_ul"] = np.array([_nanmean(v) for v in cd3_values]) if n else np.zeros(0)
    out["lymphocytes_per_ul"] = np.array([_nanmean(v) for v in lymph_values]) if n \
        else np.zeros(0)
    out["cd3_tube_spread"] = relative_spread(tube_rows_cd3, tube_group, n)
    out["lymphocytes_tube_spread"] = relative_spread(tube_rows_lymph, tube_group, n)
    out["cd4_cd8_ratio"] = cd4_cd8_ratio(out["cd4_per_ul"], out["cd8_per_ul"])
    out["cd4_cd8_ratio_dual"] = cd4_cd8_ratio(out["cd4_per_ul_dual"], out["cd8_per_ul_dual"])
    # CD3+ of the tubes whose CD4+ and CD8+ make the sum (the study's CD4 and CD8 tubes)
    cd3_t_tubes = np.array([_nanmean(v) for v in cd3_t_values]) if n else np.zeros(0)
    out["cd4_plus_cd8_to_cd3"] = ratio(out["cd4_per_ul"] + out["cd8_per_ul"], cd3_t_tubes)

    _, alc_patients = _alc_inputs(samples["patient_id"], samples["lymphocyte_events"],
                                  samples["bead_events"], samples["beads_per_test"],
                                  samples["volume_ul"], samples["alc"])
    flags_by_patient = []
    for p, patient in enumerate(patients):
        mine = tube_rows.get(patient, [])
        present = {r["tube"] for r in mine}
        qc = patient_qc(present, panels)
        summed = patient_qc(present, panels, "LYMPHOSUM_WARNING")
        limits = {} if qc is None else {
            "max_tube_spread": None if qc.cd3_per_ul_pct is None else qc.cd3_per_ul_pct / 100,
            "max_cd4_cd8_mismatch": None if qc.t_sum_pct is None else qc.t_sum_pct / 100}
        lymphosum = out["lymphosum_pct"][p] if "lymphosum_pct" in out else float("nan")
        expected = present | set((named_tubes or {}).get(patient, ()))
        flags = patient_flags(missing_tubes=_missing_tubes(present, panels, expected),
                              cd3_tube_spread=out["cd3_tube_spread"][p],
                              lymphocytes_tube_spread=out["lymphocytes_tube_spread"][p],
                              cd4_plus_cd8_to_cd3=out["cd4_plus_cd8_to_cd3"][p],
                              alc_disagrees=patient in alc_patients,
                              cd3_spread_beyond_counting=beyond["cd3"][p],
                              lymphocytes_spread_beyond_counting=beyond["lymph"][p],
                              cd3_pct_disagrees=beyond["cd3_pct"][p],
                              lymphosum=None if summed is None else lymphosum_flag(
                                  lymphosum, summed.lymphosum_warn, summed.lymphosum_fail),
                              **limits)
        for r in mine:
            flags += [f"{r['tube']}:{f}" for f in str(r["qc_flags"]).split(";") if f]
        flags_by_patient.append(";".join(flags))
    columns = {"patient_id": list(patients), **{c: list(out[c]) for c in out},
               "qc_flags": flags_by_patient}
    names = PROFILE_COLUMNS + extra
    kinds = {c: "str" if c in ("patient_id", "qc_flags") else "float" for c in names}
    precision = {**PROFILE_PRECISION,
                 **{c: CELLS_PER_UL if c.endswith("_per_ul") or c.endswith("_per_ul_dual")
                    else FOUR_DIGITS for c in extra}}
    return Table({c: columns[c] for c in names}, kinds, precision)


def patient_qc(present: Iterable[str], panels: Mapping[str, Panel],
               flag: str | None = None) -> PanelQC | None:
    """The QC limits a patient-level flag of :func:`profile_table` is raised on.

    A patient's flags are checked on the limits of the panel of their first tube, in the
    panel set's order; the lymphosum (``LYMPHOSUM_*`` flags) on those of the first of
    their tubes whose panel defines one, the CD3+ % agreement (``CD3_PCT_*``) on those of
    the panel of several tubes whose tubes are compared.

    Parameters
    ----------
    present : iterable of str
        The tubes the patient has (``samples.csv``'s ``tube``).
    panels : mapping
        Tube → :class:`~immunoprofile.gating.panels.Panel` (a ``PanelSet``).
    flag : str, optional
        The flag's name; None: the patient's general limits.

    Returns
    -------
    PanelQC or None
        None when none of the tubes is of the panel set.
    """
    present = set(present)
    mine = [t for t in panels if t in present]
    if not mine:
        return None
    if flag is not None and flag.startswith("LYMPHOSUM"):
        return next((panels[t].qc for t in mine if panels[t].qc.lymphosum_gates),
                    panels[mine[0]].qc)
    if flag is not None and flag.startswith("CD3_PCT"):
        paired = _paired_tubes(mine, panels)
        return panels[paired[0]].qc if paired else panels[mine[0]].qc
    return panels[mine[0]].qc


def _paired_tubes(mine: Sequence[str], panels: Mapping[str, Panel]) -> list[str]:
    """Of a patient's tubes (in the panel set's order), those whose CD3+ % of lymphocytes
    is compared: the tubes of the first panel of several tubes that makes the check."""
    paired = [t for t in mine if _has_check(panels, t, "cd3_pct_tube_difference")]
    return [t for t in paired if panels[t].panel == panels[paired[0]].panel]


def reported_columns(panel: Panel, tube: str) -> tuple[tuple[str, str], ...]:
    """Gate → profile column a tube reports (a study tube made in code without
    ``reports``: its population → its column of :data:`TUBE_COLUMNS`).

    Parameters
    ----------
    panel : Panel
        The tube's panel.
    tube : str
        The tube's name.

    Returns
    -------
    tuple of (str, str)
        ``(gate ID, profile column)`` pairs, e.g. ``("CD4pos", "cd4_per_ul")``.
    """
    if panel.reports:
        return panel.reports
    return ((panel.population, TUBE_COLUMNS[tube]),) if tube in TUBE_COLUMNS else ()


def _has_check(panels: Mapping[str, Panel], tube: str, column: str) -> bool:
    """Whether a tube's panel makes the check written in ``column``: a lymphosum, or the
    CD3 % agreement of a panel of several tubes."""
    panel = panels[tube]
    if column == "lymphosum_pct":
        return bool(panel.qc.lymphosum_gates)
    siblings = [t for t, p in panels.items() if p.panel == panel.panel]
    return panel.qc.cd3_pct_points is not None and len(siblings) > 1


def _spread_limit(qc, values: Sequence[float]) -> float | None:
    """The CD3+/µL spread limit as a max − min difference (cells/µL) for
    :func:`~immunoprofile.counting.qc.beyond_counting_error`."""
    known = [v for v in values if not math.isnan(v)]
    if qc.cd3_per_ul_pct is None or len(known) < 2:
        return None
    return qc.cd3_per_ul_pct / 100 * float(np.mean(known))


def _binomial_sd_points(pct: float, lymphocyte_events: float) -> float:
    """Counting SD of a % of lymphocytes, percentage points: sqrt(p(1 − p) / n) × 100."""
    if math.isnan(pct) or not lymphocyte_events > 0:
        return float("nan")
    p = pct / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / lymphocyte_events)


def _lymphosum(patient: str, tubes: Sequence[str], panels: Mapping[str, Panel],
               pct: Mapping[tuple[str, str, str], float]) -> float:
    """T + B + NK as % of lymphocytes: each lymphosum gate's % of lymphocytes, the mean over
    the patient's tubes that have it; NaN when the panel has no lymphosum or a gate is in
    none of the tubes."""
    with_sum = [t for t in tubes if panels[t].qc.lymphosum_gates]
    if not with_sum:
        return float("nan")
    total = 0.0
    for gate in panels[with_sum[0]].qc.lymphosum_gates:
        values = [pct.get((patient, t, gate), np.nan) for t in with_sum]
        value = _nanmean(values)
        if math.isnan(value):
            return float("nan")
        total += value
    return total


def _missing_tubes(present: set[str], panels: Mapping[str, Panel],
                   named: set[str] | None = None) -> list[str]:
    """Tubes a patient lacks: every tube of each panel a tube of theirs belongs to —
    counted, or named for them in the manifest (``named``) — and the study's three when
    neither says."""
    known = present | (named or set())
    names = {panels[t].panel for t in known if t in panels} or \
        {panels[t].panel for t in TUBE_COLUMNS if t in panels}
    expected = [t for t, p in panels.items() if p.panel in names]
    return [t for t in expected if t not in present]


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")
