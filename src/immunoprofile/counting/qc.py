"""Laboratory QC checks on counts: thresholds, flag names and their explanations.

Each flag is a short upper-case name (shown in ``qc_flags``) with a sentence the README
and the report use. Sample flags are written ``tube:FLAG`` in a patient's profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .._compile.jit import kernel
from ..gating.panel_spec import PanelQC
from .absolute import poisson_cv, ratio, single_platform_cells_per_ul

#: Fewer bead events than this makes the bead count's own Poisson CV exceed ~3 %.
MIN_BEAD_EVENTS = 1_000
#: Fewer lymphocyte events than this makes percentages of lymphocytes imprecise (CV > 3 %).
MIN_LYMPHOCYTE_EVENTS = 1_000
#: Fewer events than this in a reported population gives a count CV above 10 %.
MIN_POPULATION_EVENTS = 100
#: Largest acceptable spread of CD3+/µL (and lymphocytes/µL) across a patient's tubes.
MAX_TUBE_SPREAD = 0.10
#: Largest acceptable |CD4 + CD8 − CD3| / CD3.
MAX_CD4_CD8_SUM_MISMATCH = 0.10
#: Largest factor, either way, between a tube's bead-based lymphocytes/µL and the manifest's
#: ALC (×1000): flow and haematology-analyser lymphocyte counts routinely differ by 10–30 %
#: (up to ~1.3×); the lab's dilution steps are ×2 or more apart (50, 25, 10, 5, 2.5 µL).
MAX_ALC_FACTOR = 1.5
#: The factor is widened by this many Poisson CVs of the bead-based count, so that counting
#: error alone (few beads or lymphocytes) does not raise the flag.
ALC_COUNTING_SDS = 3.0
#: The lymphosum (T + B + NK as % of lymphocytes) ranges of a TBNK result: outside the
#: first a warning, outside the second a failure (CLSI H42-A2; Nicholson et al.,
#: Cytometry 1996 — every lymphocyte is a T, B or NK cell, so the sum checks the
#: lymphocyte gate and the subsets together).
LYMPHOSUM_WARN = (95.0, 105.0)
LYMPHOSUM_FAIL = (90.0, 110.0)
#: The regulatory minimum of lymphocyte events for a TBNK result (CDC/CLSI H42 guidance:
#: 2,500 gated lymphocytes) and the floor below which a result is not usable.
TBNK_MIN_LYMPHOCYTE_EVENTS = 2_500
LYMPHOCYTE_EVENT_FLOOR = 1_000
#: Largest difference of CD3+ % of lymphocytes between the tubes of a multi-tube panel
#: (the 4-colour TBNK pair), percentage points.
MAX_CD3_PCT_POINTS = 3.0
#: A tube difference within this many counting SDs is not flagged (a panel may set 0).
TUBE_COUNTING_SDS = 3.0
#: Bead events as a share of all events outside these bounds make the count unreliable.
MIN_BEAD_FRACTION = 0.005
MAX_BEAD_FRACTION = 0.50

FLAG_DESCRIPTIONS: dict[str, str] = {
    "LOW_BEAD_EVENTS": f"fewer than {MIN_BEAD_EVENTS:,} bead events: absolute counts carry "
                       "more than ~3 % counting error from the beads alone",
    "LOW_LYMPHOCYTE_EVENTS": f"fewer lymphocyte events than the panel's minimum "
                             f"({TBNK_MIN_LYMPHOCYTE_EVENTS:,} by default, "
                             f"{MIN_LYMPHOCYTE_EVENTS:,} for the study's tubes): percentages "
                             "of lymphocytes are imprecise",
    "LYMPHOCYTES_BELOW_FLOOR": f"fewer than {LYMPHOCYTE_EVENT_FLOOR:,} lymphocyte events "
                               "(a TBNK tube's floor): the result should not be reported",
    "LYMPHOSUM_WARNING": "T + B + NK cells are not "
                         f"{LYMPHOSUM_WARN[0]:g}–{LYMPHOSUM_WARN[1]:g} % of the lymphocytes "
                         "(lymphosum_pct): the lymphocyte gate holds other events, or "
                         "misses lymphocytes, or a subset gate is off — review the plots",
    "LYMPHOSUM_FAIL": "T + B + NK cells are not "
                      f"{LYMPHOSUM_FAIL[0]:g}–{LYMPHOSUM_FAIL[1]:g} % of the lymphocytes: "
                      "the result should not be reported before the gating is reviewed",
    "CD3_PCT_TUBE_DISAGREEMENT": "CD3+ % of lymphocytes differs between the patient's tubes "
                                 f"by more than {MAX_CD3_PCT_POINTS:g} percentage points "
                                 "and more than counting error explains",
    "LOW_POPULATION_EVENTS": f"the tube's reported population (NK, CD4+ or CD8+) has fewer "
                             f"than {MIN_POPULATION_EVENTS} events: its count's CV exceeds "
                             "10 % (a TBNK tube names each such population: "
                             "LOW_POPULATION_EVENTS:<gate>)",
    "NO_SPILLOVER": "the file carries no spillover matrix, so its fluorescence was gated "
                    "uncompensated",
    "CD3_TUBE_DISAGREEMENT": "CD3+ cells/µL differ between the patient's tubes by more than "
                             f"{MAX_TUBE_SPREAD:.0%} (max − min, relative to the mean) and, "
                             "for a TBNK panel, by more than counting error explains "
                             f"({TUBE_COUNTING_SDS:g} SD)",
    "LYMPHOCYTE_TUBE_DISAGREEMENT": "lymphocytes/µL differ between the patient's tubes by "
                                    f"more than {MAX_TUBE_SPREAD:.0%} (and, for a TBNK "
                                    "panel, more than counting error explains)",
    "CD4_CD8_SUM_MISMATCH": "CD4+ plus CD8+ T cells differ from CD3+ T cells by more than "
                            f"{MAX_CD4_CD8_SUM_MISMATCH:.0%}",
    "GATE_UNCERTAIN": "adaptive gating could not place a gate with confidence (written "
                      "GATE_UNCERTAIN:<gate>): a shallow valley between negative and positive "
                      "cells, a population not found, or a gate outside the template's search "
                      "range — the count is written; review the tube's gating plot",
    "WIDER_PANEL": "the file carries every marker of a wider panel's tube (written "
                   "WIDER_PANEL:<tube>) than the tube the manifest names, which uses only "
                   "some of them: the populations only the wider tube reports (CD8+, B "
                   "and NK cells of a TBNK file named cd4, say) are not counted — name "
                   "that tube in the manifest, or leave its tube blank to detect it",
    "LYMPHOSUM_OVERLAP": "two gates the lymphosum adds up share events (written "
                         "LYMPHOSUM_OVERLAP:<gate>+<gate>; more than the panel's overlap_pct, "
                         "0.5 % of the tube's lymphocytes by default): those events are "
                         "summed twice and both populations may hold cells of the other — "
                         "make the gates exclude each other in the template",
    "UNUSED_MARKERS": "the file carries markers that a panel uses but its tube does not "
                      "(written UNUSED_MARKERS:<markers>, a CD19 channel in a file counted "
                      "as the 4-colour T-cell tube, say): the cells they stain are not "
                      "counted — check that the tube is the one meant, or add a panel "
                      "that uses them",
    "MISSING_TUBE": "one of the patient's three tubes is absent or failed (written "
                    "MISSING_TUBE:<tube>); its values are empty",
    "BEAD_FRACTION_LOW": f"bead events are under {MIN_BEAD_FRACTION:.1%} of all events: too "
                         "much blood for the beads (undiluted lymphocytosis?) or too few "
                         "beads in the tube",
    "BEAD_FRACTION_HIGH": f"bead events are over {MAX_BEAD_FRACTION:.0%} of all events: "
                          "little blood in the tube (over-diluted, or not pipetted?)",
    "VOLUME_DISAGREEMENT": "this tube's bead-based lymphocytes/µL differ from the patient's "
                           f"alc by more than a factor {MAX_ALC_FACTOR:g} while the "
                           "patient's other tubes agree with it: this tube's volume_ul (or "
                           "beads_per_test) is likely wrong — samples.csv's "
                           "implied_volume_ul is the blood volume the alc implies",
    "ALC_DISAGREEMENT": "bead-based lymphocytes/µL differ from the manifest's alc (×1000) by "
                        f"more than a factor {MAX_ALC_FACTOR:g} in every tube: the alc is "
                        "likely wrong, or the volume_ul the tubes share (a dilution the "
                        "manifest does not record?) — compare volume_ul with "
                        "implied_volume_ul in samples.csv",
}


def describe_flag(flag: str, qc: PanelQC | None = None) -> str:
    """A QC flag in words, with the limits that raised it.

    Parameters
    ----------
    flag : str
        ``NAME`` or ``NAME:detail`` (``GATE_UNCERTAIN:CD4pos``,
        ``LOW_POPULATION_EVENTS:CD3pos``, ``MISSING_TUBE:cd8``), without a tube prefix.
    qc : PanelQC, optional
        The limits of the panel whose check raised it (a lab's panel file may change
        every one): the sentence quotes them. Without it, :data:`FLAG_DESCRIPTIONS`'s
        sentence, which gives the defaults.

    Returns
    -------
    str
        One sentence; "see the README" for a name it does not know.

    Examples
    --------
    >>> describe_flag("LOW_POPULATION_EVENTS:CD19pos")[:60]
    "the tube's CD19pos population has fewer than 100 events: its"
    >>> describe_flag("LYMPHOSUM_WARNING", PanelQC(lymphosum_warn=(97.0, 103.0)))[:33]
    'T + B + NK cells are not 97–103 %'
    """
    name, _, detail = flag.partition(":")
    if name == "LOW_POPULATION_EVENTS" and detail:
        return (f"the tube's {detail} population has fewer than {MIN_POPULATION_EVENTS} "
                "events: its count's CV exceeds 10 %")
    if name == "GATE_UNCERTAIN" and detail:
        return (f"adaptive gating could not place gate {detail} with confidence (a shallow "
                "valley between negative and positive cells, a population not found, or a "
                "gate outside the template's search range): the count is written; review "
                "the tube's gating plot")
    if name == "WIDER_PANEL" and detail:
        return (f"the file carries every marker of the {detail} tube, of which the tube the "
                "manifest names uses only some: the populations only the "
                f"{detail} tube reports are not counted — name the tube {detail} in the "
                "manifest, or leave its tube blank to detect it")
    if name == "UNUSED_MARKERS" and detail:
        return (f"the file carries {detail.replace(',', ', ')}, which its tube does not "
                "use: the cells they stain are not counted — check that the tube is the "
                "one meant (a wider panel's tube with a channel missing?), or add a panel "
                "that uses them")
    if name == "LYMPHOSUM_OVERLAP" and detail:
        first, _, second = detail.partition("+")
        return (f"{first} and {second} share events, which the lymphosum counts twice, and "
                f"either count may hold cells of the other — make the two gates exclude "
                "each other in the template (as NK and B cells are told apart by CD19)")
    if name == "MISSING_TUBE" and detail:
        return f"the {detail} tube is absent or failed; its values are empty"
    if qc is None:
        return FLAG_DESCRIPTIONS.get(name, "see the README")
    beyond = (f" and by more than counting error explains ({qc.counting_sds:g} SD)"
              if qc.counting_sds > 0 else "")
    limits = {
        "LOW_BEAD_EVENTS": (qc.bead_events, lambda v: (
            f"fewer than {v:,} bead events (the panel's minimum): absolute counts carry "
            "more counting error from the beads alone")),
        "LOW_LYMPHOCYTE_EVENTS": (qc.lymphocyte_events_warn, lambda v: (
            f"fewer than {v:,} lymphocyte events (the panel's minimum): percentages of "
            "lymphocytes are imprecise")),
        "LYMPHOCYTES_BELOW_FLOOR": (qc.lymphocyte_events_fail, lambda v: (
            f"fewer than {v:,} lymphocyte events (the panel's floor): the result should "
            "not be reported")),
        "LYMPHOSUM_WARNING": (qc.lymphosum_warn, lambda v: (
            f"T + B + NK cells are not {v[0]:g}–{v[1]:g} % of the lymphocytes "
            "(lymphosum_pct): the lymphocyte gate holds other events, or misses "
            "lymphocytes, or a subset gate is off — review the plots")),
        "LYMPHOSUM_FAIL": (qc.lymphosum_fail, lambda v: (
            f"T + B + NK cells are not {v[0]:g}–{v[1]:g} % of the lymphocytes: the result "
            "should not be reported before the gating is reviewed")),
        "CD3_PCT_TUBE_DISAGREEMENT": (qc.cd3_pct_points, lambda v: (
            "CD3+ % of lymphocytes differs between the patient's tubes by more than "
            f"{v:g} percentage points{beyond}")),
        "CD3_TUBE_DISAGREEMENT": (qc.cd3_per_ul_pct, lambda v: (
            f"CD3+ cells/µL differ between the patient's tubes by more than {v:g} % "
            f"(max − min, relative to the mean){beyond}")),
        "LYMPHOCYTE_TUBE_DISAGREEMENT": (qc.cd3_per_ul_pct, lambda v: (
            f"lymphocytes/µL differ between the patient's tubes by more than {v:g} % "
            f"(max − min, relative to the mean){beyond}")),
        "CD4_CD8_SUM_MISMATCH": (qc.t_sum_pct, lambda v: (
            f"CD4+ plus CD8+ T cells differ from CD3+ T cells by more than {v:g} %")),
    }
    if name in limits and limits[name][0] is not None:
        value, sentence = limits[name]
        return sentence(value)
    return FLAG_DESCRIPTIONS.get(name, "see the README")


def implied_volume_ul(lymphocyte_events, bead_events, beads_per_test, alc) -> np.ndarray:
    """The blood volume a tube's bead ratio and the haematology ALC imply, µL.

    ``beads_per_test × lymphocyte events / (bead events × alc × 1000)``: the volume for
    which the bead-based lymphocyte count equals the ALC.

    Parameters
    ----------
    lymphocyte_events, bead_events : array_like
        Events in the Lymphocytes and Beads gates.
    beads_per_test : array_like
        Beads in the tube; NaN for a tube without beads.
    alc : array_like
        Absolute lymphocyte count, ×10⁹/L; NaN when unknown.

    Returns
    -------
    numpy.ndarray
        µL; NaN where an input is unknown or there are no bead events.

    Examples
    --------
    >>> implied_volume_ul([20_000], [2_000], [50_000], [10.0]).round(3).tolist()
    [50.0]
    """
    per_ul_stained = single_platform_cells_per_ul(lymphocyte_events, bead_events,
                                                  beads_per_test, 1.0)
    return ratio(per_ul_stained, np.asarray(alc, dtype=np.float64) * 1000.0)


def disagrees_with_alc(lymphocyte_events, bead_events, beads_per_test, volume_ul,
                       alc) -> np.ndarray:
    """Whether a tube's bead-based lymphocytes/µL and the manifest's ALC disagree.

    Equivalently, whether ``volume_ul`` and :func:`implied_volume_ul` disagree: they
    differ by more than :data:`MAX_ALC_FACTOR`, either way, widened by
    :data:`ALC_COUNTING_SDS` Poisson CVs of the bead-based count
    (``|ln(implied / volume_ul)| > ln 1.5 + 3 × sqrt(1/lymphocytes + 1/beads)``).

    Parameters
    ----------
    lymphocyte_events, bead_events : array_like
        Events in the Lymphocytes and Beads gates.
    beads_per_test, volume_ul, alc : array_like
        Beads in the tube, blood stained (µL), ALC (×10⁹/L); NaN when unknown.

    Returns
    -------
    numpy.ndarray of bool
        False wherever an input is unknown (NaN) or there are no bead events.

    Examples
    --------
    >>> disagrees_with_alc([20_000, 20_000], [2_000, 2_000], 50_000, [50, 2.5], 10.0).tolist()
    [False, True]
    """
    implied = implied_volume_ul(lymphocyte_events, bead_events, beads_per_test, alc)
    volume = np.broadcast_to(np.asarray(volume_ul, dtype=np.float64), implied.shape)
    cv = poisson_cv(lymphocyte_events, bead_events)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_factor = np.abs(np.log(implied / volume))
    limit = np.log(MAX_ALC_FACTOR) + ALC_COUNTING_SDS * np.nan_to_num(cv, nan=0.0)
    known = ~np.isnan(log_factor)
    return known & (log_factor > limit)


def alc_checks(patient_ids, lymphocyte_events, bead_events, beads_per_test, volume_ul,
               alc) -> tuple[np.ndarray, set[str]]:
    """The ALC plausibility flags of a batch's tubes, attributed to the likely wrong input.

    A tube disagrees with the ALC as :func:`disagrees_with_alc` says. When every tube of a
    patient that can be compared disagrees, the patient's ALC (or the volume its tubes
    share) is suspect: ``ALC_DISAGREEMENT`` on the patient. When only some do, those
    tubes' own ``volume_ul`` (or ``beads_per_test``) is suspect: ``VOLUME_DISAGREEMENT``
    on each of them.

    Parameters
    ----------
    patient_ids : sequence of str
        Patient of each tube.
    lymphocyte_events, bead_events, beads_per_test, volume_ul, alc : array_like
        Per tube, as for :func:`disagrees_with_alc`.

    Returns
    -------
    volume_flags : numpy.ndarray of bool
        Per tube: ``VOLUME_DISAGREEMENT``.
    alc_patients : set of str
        Patients with ``ALC_DISAGREEMENT``.
    """
    patients = list(patient_ids)
    if not patients:
        return np.zeros(0, dtype=bool), set()
    disagree = disagrees_with_alc(lymphocyte_events, bead_events, beads_per_test, volume_ul,
                                  alc)
    comparable = ~np.isnan(implied_volume_ul(lymphocyte_events, bead_events, beads_per_test,
                                             alc))
    comparable &= ~np.isnan(np.broadcast_to(np.asarray(volume_ul, dtype=np.float64),
                                            comparable.shape))
    names, group = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    compared = np.bincount(group, weights=comparable, minlength=names.size)
    agreeing = np.bincount(group, weights=comparable & ~disagree, minlength=names.size)
    every_tube = (compared > 0) & (agreeing == 0)
    return disagree & ~every_tube[group], {str(n) for n in names[every_tube]}


def bead_fraction_flag(bead_events: int, events: int) -> str | None:
    """``BEAD_FRACTION_LOW`` or ``BEAD_FRACTION_HIGH`` for a bead tube, or None.

    Parameters
    ----------
    bead_events, events : int
        Events in the Beads gate and in the whole file.

    Examples
    --------
    >>> bead_fraction_flag(40, 25_000), bead_fraction_flag(2_500, 25_000)
    ('BEAD_FRACTION_LOW', None)
    """
    if events <= 0:
        return None
    share = bead_events / events
    if share < MIN_BEAD_FRACTION:
        return "BEAD_FRACTION_LOW"
    if share > MAX_BEAD_FRACTION:
        return "BEAD_FRACTION_HIGH"
    return None


@kernel(args=[("f8", 1), ("i8", 1), ("int", 0)], returns=("f8", 1))
def _relative_spread(values, group, n_groups):
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    total = np.zeros(n_groups)
    count = np.zeros(n_groups, dtype=np.int64)
    for i in range(values.size):
        v = values[i]
        if np.isnan(v):
            continue
        g = group[i]
        lo[g] = min(lo[g], v)
        hi[g] = max(hi[g], v)
        total[g] += v
        count[g] += 1
    out = np.full(n_groups, np.nan)
    for g in range(n_groups):
        if count[g] >= 2 and total[g] > 0:
            out[g] = (hi[g] - lo[g]) / (total[g] / count[g])
    return out


def relative_spread(values, group, n_groups: int) -> np.ndarray:
    """Spread of a count across each patient's tubes: (max − min) / mean.

    Parameters
    ----------
    values : array_like
        One value per tube (e.g. CD3+ cells/µL); NaN values are ignored.
    group : array_like of int
        Patient index of each tube, 0 … n_groups−1.
    n_groups : int
        Number of patients.

    Returns
    -------
    numpy.ndarray
        One value per patient (0.1 = 10 %); NaN with fewer than two tubes.
    """
    vals = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    grp = np.ascontiguousarray(np.asarray(group, dtype=np.int64))
    if vals.shape != grp.shape:
        raise ValueError("values and group must have the same length")
    if grp.size and (grp.min() < 0 or grp.max() >= n_groups):
        raise ValueError("group indices must lie in 0 … n_groups−1")
    return _relative_spread(vals, grp, int(n_groups))


def tube_flags(*, bead_events: int, lymphocyte_events: int, population_events: int,
               events: int, beads_counted: bool, has_spillover: bool,
               uncertain_gates: Sequence[str] = (),
               min_bead_events: int | None = MIN_BEAD_EVENTS,
               min_lymphocyte_events: int | None = MIN_LYMPHOCYTE_EVENTS,
               lymphocyte_event_floor: int | None = None,
               reported_events: Mapping[str, int] | None = None,
               wider_panel: str | None = None,
               unused_markers: Sequence[str] = (),
               shared_events: Sequence[tuple[str, str, int]] = (),
               max_shared_pct: float | None = None) -> list[str]:
    """The QC flags of one tube, in the order ``qc_flags`` lists them.

    Parameters
    ----------
    bead_events, lymphocyte_events, population_events, events : int
        Events in the bead gate, in the lymphocyte gate, in the tube's reported
        population (NK, CD4+ or CD8+) and in the whole file.
    beads_counted : bool
        Whether the tube is counted with beads (its ``beads_per_test`` is given): only then
        do the bead flags apply.
    has_spillover : bool
        Whether the file carries a spillover matrix.
    uncertain_gates : sequence of str
        Gates adaptive gating could not place with confidence.
    min_bead_events, min_lymphocyte_events, lymphocyte_event_floor : int or None
        The panel's limits, events (None: no such check): ``LOW_BEAD_EVENTS``,
        ``LOW_LYMPHOCYTE_EVENTS``, ``LYMPHOCYTES_BELOW_FLOOR``.
    reported_events : mapping, optional
        Gate → events of every population a tube reports, for a tube that reports several
        (a TBNK tube): each one under :data:`MIN_POPULATION_EVENTS` is flagged
        ``LOW_POPULATION_EVENTS:<gate>`` (instead of the one-population check).
    wider_panel : str, optional
        The tube of a wider panel whose every marker the file carries, when the manifest
        names a narrower tube (``WIDER_PANEL:<tube>``: populations are left uncounted).
    unused_markers : sequence of str
        Markers some panel uses that the file carries and its tube does not
        (``UNUSED_MARKERS:<markers>``, comma-separated: what they stain goes uncounted).
    shared_events : sequence of (str, str, int)
        Events two lymphosum gates both hold, per pair of them in the tube.
    max_shared_pct : float or None
        Largest share of the lymphocyte events a pair may share, %: above it
        ``LYMPHOSUM_OVERLAP:<gate>+<gate>`` (the lymphosum counts those events twice);
        None: no such check.

    Returns
    -------
    list of str
        Flag names of :data:`FLAG_DESCRIPTIONS` (``GATE_UNCERTAIN:<gate>`` per gate).

    Examples
    --------
    >>> tube_flags(bead_events=900, lymphocyte_events=5000, population_events=80,
    ...            events=20000, beads_counted=True, has_spillover=True)
    ['LOW_BEAD_EVENTS', 'LOW_POPULATION_EVENTS']
    >>> tube_flags(bead_events=2000, lymphocyte_events=900, population_events=500,
    ...            events=20000, beads_counted=True, has_spillover=True,
    ...            min_lymphocyte_events=2500, lymphocyte_event_floor=1000)
    ['LOW_LYMPHOCYTE_EVENTS', 'LYMPHOCYTES_BELOW_FLOOR']
    """
    flags = []
    if beads_counted and min_bead_events is not None and bead_events < min_bead_events:
        flags.append("LOW_BEAD_EVENTS")
    if min_lymphocyte_events is not None and lymphocyte_events < min_lymphocyte_events:
        flags.append("LOW_LYMPHOCYTE_EVENTS")
    if lymphocyte_event_floor is not None and lymphocyte_events < lymphocyte_event_floor:
        flags.append("LYMPHOCYTES_BELOW_FLOOR")
    if reported_events:
        flags += [f"LOW_POPULATION_EVENTS:{gate}" for gate, n in reported_events.items()
                  if n < MIN_POPULATION_EVENTS]
    elif population_events < MIN_POPULATION_EVENTS:
        flags.append("LOW_POPULATION_EVENTS")
    if not has_spillover:
        flags.append("NO_SPILLOVER")
    if beads_counted:
        flags += filter(None, [bead_fraction_flag(bead_events, events)])
    flags += [f"GATE_UNCERTAIN:{gate}" for gate in uncertain_gates]
    if wider_panel:
        flags.append(f"WIDER_PANEL:{wider_panel}")
    if unused_markers:
        flags.append(f"UNUSED_MARKERS:{','.join(unused_markers)}")
    if max_shared_pct is not None:
        flags += [f"LYMPHOSUM_OVERLAP:{a}+{b}" for a, b, n in shared_events
                  if n > 0 and 100.0 * n > max_shared_pct * lymphocyte_events]
    return flags


def beyond_counting_error(values, sds, limit: float | None, counting_sds: float) -> bool:
    """Whether values of one quantity from a patient's tubes differ by more than ``limit``
    (max − min) and by more than counting error explains.

    Parameters
    ----------
    values, sds : sequence of float
        The value from each tube and its counting SD (same units); NaN values are left out.
    limit : float or None
        Largest acceptable max − min; None: never flagged.
    counting_sds : float
        The difference must also exceed this many SDs of the difference of the two extreme
        tubes, ``counting_sds × sqrt(sd_max² + sd_min²)``; 0: the limit alone decides.

    Returns
    -------
    bool
        False with fewer than two values.

    Examples
    --------
    >>> beyond_counting_error([40.0, 44.5], [0.5, 0.5], 3.0, 3.0)  # 4.5 > 3 and > 2.1
    True
    >>> beyond_counting_error([40.0, 44.5], [1.5, 1.5], 3.0, 3.0)  # 4.5 < 3 × 2.12
    False
    """
    if limit is None:
        return False
    v = np.asarray(values, dtype=np.float64)
    sd = np.asarray(sds, dtype=np.float64)
    keep = ~np.isnan(v)
    v, sd = v[keep], np.nan_to_num(sd[keep], nan=0.0)
    if v.size < 2:
        return False
    hi, lo = int(np.argmax(v)), int(np.argmin(v))
    difference = float(v[hi] - v[lo])
    tolerance = counting_sds * float(np.hypot(sd[hi], sd[lo]))
    return difference > limit and difference > tolerance


def lymphosum_flag(lymphosum_pct: float, warn: tuple[float, float] = LYMPHOSUM_WARN,
                   fail: tuple[float, float] = LYMPHOSUM_FAIL) -> str | None:
    """``LYMPHOSUM_FAIL``, ``LYMPHOSUM_WARNING`` or None for a lymphosum.

    Parameters
    ----------
    lymphosum_pct : float
        T + B + NK cells as % of lymphocytes; NaN raises no flag.
    warn, fail : (float, float)
        The acceptable ranges, %.

    Examples
    --------
    >>> lymphosum_flag(98.0), lymphosum_flag(93.0), lymphosum_flag(111.0)
    (None, 'LYMPHOSUM_WARNING', 'LYMPHOSUM_FAIL')
    """
    if math.isnan(lymphosum_pct):
        return None
    if not fail[0] <= lymphosum_pct <= fail[1]:
        return "LYMPHOSUM_FAIL"
    if not warn[0] <= lymphosum_pct <= warn[1]:
        return "LYMPHOSUM_WARNING"
    return None


def patient_flags(*, missing_tubes: Sequence[str], cd3_tube_spread: float,
                  lymphocytes_tube_spread: float, cd4_plus_cd8_to_cd3: float,
                  alc_disagrees: bool, max_tube_spread: float | None = MAX_TUBE_SPREAD,
                  max_cd4_cd8_mismatch: float | None = MAX_CD4_CD8_SUM_MISMATCH,
                  cd3_spread_beyond_counting: bool = True,
                  lymphocytes_spread_beyond_counting: bool = True,
                  cd3_pct_disagrees: bool = False,
                  lymphosum: str | None = None) -> list[str]:
    """The QC flags of one patient's profile (before its tubes' own, ``tube:FLAG``).

    Parameters
    ----------
    missing_tubes : sequence of str
        The patient's tubes absent or failed.
    cd3_tube_spread, lymphocytes_tube_spread : float
        (max − min) / mean of CD3+/µL and of lymphocytes/µL over the patient's tubes
        (:func:`relative_spread`); NaN when not computable.
    cd4_plus_cd8_to_cd3 : float
        (CD4+ + CD8+ T cells/µL) / CD3+ T cells/µL of the CD4 and CD8 tubes; NaN when not
        computable.
    alc_disagrees : bool
        Every tube's bead-based lymphocytes/µL disagrees with the manifest's ALC
        (:func:`alc_checks`).
    max_tube_spread, max_cd4_cd8_mismatch : float or None
        The panel's limits, fractions (None: no such check).
    cd3_spread_beyond_counting, lymphocytes_spread_beyond_counting : bool
        Whether each spread exceeds what counting error explains
        (:func:`beyond_counting_error`); False keeps a spread over the limit unflagged.
    cd3_pct_disagrees : bool
        The tubes' CD3+ % of lymphocytes disagree (``CD3_PCT_TUBE_DISAGREEMENT``).
    lymphosum : str or None
        :func:`lymphosum_flag` of the patient's lymphosum.

    Returns
    -------
    list of str
        Flag names of :data:`FLAG_DESCRIPTIONS` (``MISSING_TUBE:<tube>`` per tube); a NaN
        spread or ratio raises no flag.

    Examples
    --------
    >>> patient_flags(missing_tubes=["nk"], cd3_tube_spread=0.04,
    ...               lymphocytes_tube_spread=float("nan"), cd4_plus_cd8_to_cd3=1.15,
    ...               alc_disagrees=False)
    ['MISSING_TUBE:nk', 'CD4_CD8_SUM_MISMATCH']
    """
    flags = [f"MISSING_TUBE:{t}" for t in missing_tubes]
    if max_tube_spread is not None:
        if cd3_tube_spread > max_tube_spread and cd3_spread_beyond_counting:
            flags.append("CD3_TUBE_DISAGREEMENT")
        if lymphocytes_tube_spread > max_tube_spread and lymphocytes_spread_beyond_counting:
            flags.append("LYMPHOCYTE_TUBE_DISAGREEMENT")
    if cd3_pct_disagrees:
        flags.append("CD3_PCT_TUBE_DISAGREEMENT")
    if max_cd4_cd8_mismatch is not None and \
            abs(cd4_plus_cd8_to_cd3 - 1.0) > max_cd4_cd8_mismatch:
        flags.append("CD4_CD8_SUM_MISMATCH")
    if lymphosum:
        flags.append(lymphosum)
    if alc_disagrees:
        flags.append("ALC_DISAGREEMENT")
    return flags
