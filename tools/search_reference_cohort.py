"""How the values of ``immunoprofile.study.reference_cohort`` were chosen (run once, by hand).

The study (Chanan-Khan et al., Cancer 2011) publishes aggregates only. Each block below
searches, with a fixed seed, for per-patient values that reproduce the published medians,
ranges and counts exactly and, where the study prints a rank-based or log-rank P value for
them, a P value that rounds to the published one. The result is printed as Python literals
that were pasted into ``src/immunoprofile/study/reference_cohort.py``. The values are SIMULATED:
any other set meeting the same constraints is as faithful to the paper as this one.

    python tools/search_reference_cohort.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).parent))
from _anneal import anneal, p_pen, range_pen

A = np.arange(45) < 29
GRADE = np.array([0] * 10 + [1] * 10 + [2] * 7 + [3] * 2 + [0] * 5 + [1] * 10 + [3])
TFR = GRADE > 0
SUBSET = np.zeros(45, bool)
SUBSET[[*range(10, 17), *range(34, 39), *range(20, 24), 27, 44]] = True


def mwu(a, b):
    return sps.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic",
                            use_continuity=True).pvalue


def step_int(lo, hi):
    def propose(state, rng):
        s = state.copy()
        i = rng.integers(s.size)
        s[i] = rng.integers(lo, hi + 1) if rng.random() < 0.3 else np.clip(
            s[i] + rng.integers(-3, 4), lo, hi)
        return s
    return propose


def ages(rng):
    def cost(v):
        c = range_pen(v[A], 47, 74, 63) + range_pen(v[~A], 42, 75, 65)
        c += range_pen(v, 42, 75, 64) + abs(np.median(v[TFR]) - 61)
        c += abs(np.median(v[~TFR]) - 71)
        c += p_pen(mwu(v[A], v[~A]), ".79") + p_pen(mwu(v[TFR], v[~TFR]), ".004")
        return c
    return anneal(rng.integers(42, 76, 45), step_int(42, 75), cost, rng)


def kw(*g):
    return sps.kruskal(*g).pvalue


def logit_p(x, y):
    """Wald P of the slope of a logistic regression of y on log(x) (Newton-Raphson)."""
    from scipy.special import expit
    X = np.column_stack([np.ones(x.size), np.log(x)])
    y = y.astype(float)
    beta = np.zeros(2)
    for _ in range(50):
        p = expit(X @ beta)
        w = p * (1 - p)
        info = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(info, X.T @ (y - p))
        except np.linalg.LinAlgError:
            return 1e-9
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    if np.abs(beta).max() > 50:
        return 1e-9
    se = np.sqrt(np.linalg.inv(info)[1, 1])
    return float(2 * sps.norm.sf(abs(beta[1] / se)))


def ties_at_ends(v):
    """Penalty when a group's minimum or maximum is shared (clumps look unreal)."""
    return float((v == v.min()).sum() - 1 + (v == v.max()).sum() - 1)


SUB_GRADE = np.array([1] * 12 + [2] * 4 + [3] * 2)
G1 = SUB_GRADE == 1
RANGES = {  # grade 1 (median, min, max), grade 2-3 (median, min, max), cells/mm3
    "nk": ((264, 36, 1355), (579, 164, 2439)),
    "cd4": ((729, 11, 2073), (598, 182, 5689)),
    "cd8": ((575, 141, 2080), (873, 494, 4021)),
}


def immune_subset(rng):
    """NK, CD4, CD8 (cells/mm3) and responder flags of the 18-patient immune subset.

    This search ended 0.1 short; three NK values were then moved by hand, keeping every
    target: 444 -> 448 (responders' median), 608 -> 609 (non-responders' maximum) and
    1028 -> 988 (so the NK-response logistic P rounds to .24 with margin).
    """
    def start():
        cols = []
        for m in ("nk", "cd4", "cd8"):
            (m1, l1, h1), (m2, l2, h2) = RANGES[m]
            v = np.empty(18)
            v[G1] = np.exp(rng.uniform(np.log(l1), np.log(h1), 12))
            v[~G1] = np.exp(rng.uniform(np.log(l2), np.log(h2), 6))
            cols.append(np.round(v))
        return np.vstack(cols + [rng.random(18) < 0.5]).astype(float)

    def propose(s, rng):
        s = s.copy()
        r = rng.random()
        if r < 0.15:
            i = rng.integers(18)
            s[3, i] = 1 - s[3, i]
        elif r < 0.3:  # swap CD8 (or CD4) between two patients of one grade group
            m = rng.integers(1, 3)
            grp = np.flatnonzero(G1 if rng.random() < 0.66 else ~G1)
            i, j = rng.choice(grp, 2, replace=False)
            s[m, [i, j]] = s[m, [j, i]]
        elif r < 0.4:  # swap two grade 2-3 patients' values (moves one between grade 2 and 3)
            i, j = rng.choice(np.flatnonzero(~G1), 2, replace=False)
            s[:3, [i, j]] = s[:3, [j, i]]
        else:
            m, i = rng.integers(3), rng.integers(18)
            lo, hi = RANGES[("nk", "cd4", "cd8")[m]][0 if G1[i] else 1][1:]
            s[m, i] = np.clip(round(s[m, i] * np.exp(rng.normal(0, 0.3))), lo, hi)
        return s

    def cost(s):
        nk, cd4, cd8, resp = s[0], s[1], s[2], s[3].astype(bool)
        c = 0.0
        for v, m in ((nk, "nk"), (cd4, "cd4"), (cd8, "cd8")):
            (m1, l1, h1), (m2, l2, h2) = RANGES[m]
            c += range_pen(v[G1], l1, h1, None, 50) + range_pen(v[~G1], l2, h2, None, 50)
            c += abs(np.median(v[G1]) - m1) + abs(np.median(v[~G1]) - m2)
            c += 0.2 * (ties_at_ends(v[G1]) + ties_at_ends(v[~G1]))
        hi = ~G1
        c += p_pen(mwu(nk[G1], nk[hi]), ".05")
        c += p_pen(logit_p(cd4, hi), ".34") + p_pen(logit_p(cd8, hi), ".15")
        g = [SUB_GRADE == k for k in (1, 2, 3)]
        # Not targeted: Kruskal-Wallis of CD4 (published P .9) and CD8 (.05) across grades
        # 1, 2, 3. Searches that also targeted them did not converge with the rest.
        ratio = cd4 / cd8
        c += p_pen(kw(*(ratio[m] for m in g)), ".01")
        # response: responders 448 (100-2439), non-responders 303 (36-609), logistic P .24
        if resp.sum() < 5 or (~resp).sum() < 3:
            return c + 10
        c += range_pen(nk[resp], 100, 2439, 448, 50) + range_pen(nk[~resp], 36, 609, 303, 50)
        c += p_pen(logit_p(nk, resp), ".24")
        # room for the subset's 5 CRs: 2 of grade 1, 2 of grade 2, 1 of grade 3
        c += max(0, 2 - resp[g[0]].sum()) + max(0, 2 - resp[g[1]].sum())
        c += max(0, 1 - resp[g[2]].sum())
        return c

    # Started from an earlier run of this search (60 000 steps, all targets) that met
    # everything here except two medians, each off by 0.5.
    first = np.array([
        [147, 273, 542, 303, 100, 229, 609, 184, 36, 448, 1355, 255,
         581, 578, 1933, 164, 2439, 552],
        [1301, 2073, 34, 1182, 1509, 11, 275, 128, 65, 1256, 2007, 58,
         892, 5689, 708, 488, 182, 292],
        [634, 159, 159, 2029, 2052, 141, 516, 145, 476, 1316, 2080, 659,
         667, 1077, 669, 494, 2856, 4021],
        [1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0]], float)
    return anneal(first, propose, cost, rng, iters=20_000, t0=0.05)


def km_median(t, e):
    """Kaplan-Meier median as SAS defines it (study.statistics.kaplan_meier_median)."""
    from immunoprofile.study.statistics import _km_median

    times = np.unique(t[e == 1])
    surv, s = [], 1.0
    for u in times:
        s *= 1 - ((t == u) & (e == 1)).sum() / (t >= u).sum()
        surv.append(s)
    return _km_median(times, np.array(surv))


def logrank_p(t, e, grp):
    o_minus_e, var = 0.0, 0.0
    for u in np.unique(t[e == 1]):
        risk = t >= u
        n, n1 = risk.sum(), (risk & grp).sum()
        d = ((t == u) & (e == 1)).sum()
        d1 = ((t == u) & (e == 1) & grp).sum()
        o_minus_e += d1 - d * n1 / n
        if n > 1:
            var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    return float(sps.chi2.sf(o_minus_e ** 2 / var, 1))


def alc(rng, subset_cells):
    """Baseline ALC, x10^9/L, in tenths; subset_cells = NK+CD4+CD8 per uL of the subset."""
    need = np.zeros(45)
    need[SUBSET] = subset_cells * 1.25 / 1000  # T and NK cells stay under 80 % of the ALC

    def cost(v10):
        v = v10 / 10
        c = range_pen(v[A], 0.7, 339, 45.9) + range_pen(v[~A], 3.5, 327, 35.1)
        c += range_pen(v, 0.7, 339, 43.6)
        c += p_pen(mwu(v[A], v[~A]), ".57")
        c += max(0.0, 0.1 - mwu(v[TFR], v[~TFR])) * 10  # no TFR association (P > .1)
        c += np.maximum(need - v, 0).sum()
        c += 0.2 * (ties_at_ends(v[A]) + ties_at_ends(v[~A]) - 2 * 0)
        return c

    def propose(s, rng):
        s = s.copy()
        i = rng.integers(45)
        s[i] = np.clip(round(s[i] * np.exp(rng.normal(0, 0.4))), 7, 3390)
        return s

    start = np.round(np.exp(rng.uniform(np.log(7), np.log(3390), 45)))
    return anneal(start, propose, cost, rng, iters=40_000)


ONSET = {"A": (4, 0, 38), "B": (9, 2, 56), "all": (6, 0, 56)}       # days: median (range)
DURATION = {"A": 13, "B": 28, "all": 14}                               # days: KM median


def tfr_times(rng):
    """Onset and duration (days) of the 30 TFRs: 19 in Group A, then 11 in Group B."""
    grp = np.arange(30) < 19
    ones = np.ones(30)

    def cost(s):
        onset, dur = s
        c = 0.0
        for key, m in (("A", grp), ("B", ~grp), ("all", ones > 0)):
            med, lo, hi = ONSET[key]
            c += range_pen(onset[m], lo, hi, med) + abs(km_median(dur[m], ones[m]) - DURATION[key])
        c += abs(np.sort(onset)[14] - np.sort(onset)[15]) + abs(np.sort(dur)[14] - np.sort(dur)[15])
        c += p_pen(logrank_p(onset, ones, grp), ".01") + p_pen(logrank_p(dur, ones, grp), ".16")
        return c

    def propose(s, rng):
        s = s.copy()
        k, i = rng.integers(2), rng.integers(30)
        s[k, i] = np.clip(s[k, i] + rng.integers(-4, 5), 0 if k == 0 else 3, 60 if k == 0 else 100)
        return s

    start = np.vstack([rng.integers(0, 40, 30), rng.integers(5, 60, 30)]).astype(float)
    return anneal(start, propose, cost, rng, iters=60_000)


def pfs(rng):
    """PFS in months (tenths) and progression flags for the 45 patients."""
    def cost(s):
        t, e = s[0] / 10, s[1]
        c = abs(km_median(t[A], e[A]) - 23) + abs(km_median(t[~A], e[~A]) - 17.8)
        c += abs(km_median(t[TFR], e[TFR]) - 19.9) + abs(km_median(t[~TFR], e[~TFR]) - 19.4)
        c = 0 if not np.isfinite(c) else c
        c += p_pen(logrank_p(t, e, A), ".74") + p_pen(logrank_p(t, e, TFR), ".92")
        c += abs(e.sum() - 33) * 0.2   # about three in four progressed by last follow-up
        return c if np.isfinite(c) else 100.0

    def propose(s, rng):
        s = s.copy()
        i = rng.integers(45)
        if rng.random() < 0.1:
            s[1, i] = 1 - s[1, i]
        else:
            s[0, i] = np.clip(s[0, i] + rng.integers(-15, 16), 10, 600)
        return s

    # Started from an earlier run whose no-TFR curve sat exactly on 0.5 at its median.
    start = np.array([PFS_FIRST_RUN, PFS_EVENTS_FIRST_RUN], float)
    start[0] *= 10
    return anneal(start, propose, cost, rng, iters=40_000, t0=0.1)


PFS_FIRST_RUN = [
    3.7, 1.2, 14.7, 2.7, 49.2, 49.0, 42.6, 39.3, 19.4, 54.5, 11.9, 4.8, 19.6, 42.2, 25.6,
    17.6, 1.6, 14.0, 36.8, 13.5, 19.9, 17.7, 23.0, 57.5, 43.1, 60.0, 43.9, 5.2, 19.9, 13.2,
    5.6, 55.7, 48.4, 1.7, 43.4, 57.4, 15.1, 17.7, 34.5, 1.0, 6.7, 19.4, 17.8, 43.5, 15.2]
PFS_EVENTS_FIRST_RUN = [
    1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1,
    1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1]


if __name__ == "__main__":
    rng = np.random.default_rng(2011)
    which = sys.argv[1:] or ["ages", "immune"]
    if "ages" in which:
        v, c = ages(rng)
        print("ages", c, v.tolist())
    if "alc" in which:
        # NK + CD4 + CD8 cells/uL of the subset (patients in index order), from "immune"
        cells = np.array([3977, 809, 1004, 1606, 2517, 3374, 775, 1146, 6913, 2405, 3525,
                          6659, 389, 234, 2964, 4133, 2714, 4312], float)
        v, c = alc(rng, cells)
        print("alc", c, (v / 10).tolist())
    if "times" in which:
        v, c = tfr_times(rng)
        print("times", c, v.astype(int).tolist())
    if "pfs" in which:
        v, c = pfs(rng)
        print("pfs", c, (v[0] / 10).tolist(), v[1].astype(int).tolist())
    if "immune" in which:
        s, c = immune_subset(rng)
        print("immune", c)
        for row in s:
            print(row.astype(int).tolist())
