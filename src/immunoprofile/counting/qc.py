"""Laboratory QC checks on counts: thresholds, flag names and their explanations.

Each flag is a short upper-case name (shown in ``qc_flags``) with a sentence the README
and the report use. Sample flags are written ``tube:FLAG`` in a patient's profile.
"""

from __future__ import annotations

import numpy as np

from .._numba import kernel

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

FLAG_DESCRIPTIONS: dict[str, str] = {
    "LOW_BEAD_EVENTS": f"fewer than {MIN_BEAD_EVENTS:,} bead events: absolute counts carry "
                       "more than ~3 % counting error from the beads alone",
    "LOW_LYMPHOCYTE_EVENTS": f"fewer than {MIN_LYMPHOCYTE_EVENTS:,} lymphocyte events",
    "LOW_POPULATION_EVENTS": f"the tube's reported population (NK, CD4+ or CD8+) has fewer "
                             f"than {MIN_POPULATION_EVENTS} events: its count's CV exceeds 10 %",
    "NO_SPILLOVER": "the file carries no spillover matrix, so its fluorescence was gated "
                    "uncompensated",
    "CD3_TUBE_DISAGREEMENT": "CD3+ cells/µL differ between the patient's tubes by more than "
                             f"{MAX_TUBE_SPREAD:.0%} (max − min, relative to the mean)",
    "LYMPHOCYTE_TUBE_DISAGREEMENT": "lymphocytes/µL differ between the patient's tubes by "
                                    f"more than {MAX_TUBE_SPREAD:.0%}",
    "CD4_CD8_SUM_MISMATCH": "CD4+ plus CD8+ T cells differ from CD3+ T cells by more than "
                            f"{MAX_CD4_CD8_SUM_MISMATCH:.0%}",
    "GATE_UNCERTAIN": "adaptive gating could not place a gate with confidence (written "
                      "GATE_UNCERTAIN:<gate>): a shallow valley between negative and positive "
                      "cells, a population not found, or a gate outside the template's search "
                      "range — the count is written; review the tube's gating plot",
    "MISSING_TUBE": "one of the patient's three tubes is absent or failed (written "
                    "MISSING_TUBE:<tube>); its values are empty",
}


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
