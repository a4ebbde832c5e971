"""The study's cohort tables, computed on any cohort: Table 2, risk factors, immune markers.

Each function takes a validated cohort table (:func:`immunoprofile.study.cohort.read_cohort`, with
immune columns from :func:`immunoprofile.study.cohort.join_profiles` where needed) and
returns a table whose every P value sits beside the name of the test that produced it
(:mod:`immunoprofile.study.statistics` chooses χ² or Fisher by the study's rule). A
comparison the data cannot support (a group empty, a column missing) gets P ``NA`` and
the reason, rather than stopping the others.

``immunoprofile cohort-stats`` writes these tables, with the figures, by
:func:`immunoprofile.report.cohort_stats_files.write_cohort_stats`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import ImmunoprofileError
from ..profile.columns import IMMUNE_PROFILE
from . import statistics as stats

TABLE_COLUMNS = ["characteristic", "all", "group_a", "group_b", "p", "test"]
#: Profile column → (label, unit), as the tables and figures name them.
MARKERS = {c.name: (c.label, c.unit) for c in IMMUNE_PROFILE}


def _num(x: float) -> str:
    if not np.isfinite(x):
        return "NA"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def median_range(values: pd.Series) -> str:
    """``"64 (42-75)"`` — median (range) of the non-missing values, as the study prints."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if v.size == 0:
        return "NA"
    return f"{_num(np.median(v))} ({_num(v.min())}-{_num(v.max())})"


def count_pct(mask: pd.Series, of: int) -> str:
    """``"22 (76)"`` — count and whole-number percentage of ``of`` patients."""
    n = int(mask.sum())
    return f"{n} ({100 * n / of:.0f})" if of else f"{n}"


def _guarded(test: Callable[[], stats.TestResult]) -> tuple[str, str]:
    """(formatted P, test name) — or ("NA", reason) when the test cannot be run."""
    try:
        result = test()
    except ImmunoprofileError as exc:
        return "NA", f"not computed: {exc}"
    return result.format_p(), result.test


def _km_text(times: pd.Series, events: pd.Series) -> str:
    ok = times.notna() & events.notna()
    if not ok.any():
        return "NA"
    km = stats.kaplan_meier_median(times[ok], events[ok])
    return f"{_num(km.median)} ({_num(km.ci_low)}-{_num(km.ci_high)})"


def table2(cohort: pd.DataFrame) -> pd.DataFrame:
    """Characteristics of regimen groups A and B with the P value of each comparison.

    Rows follow the study's Table 2: patients, age, sex, Rai stage, ALC, ZAP-70, TFR and
    its grades, time to onset and duration of TFR, response and PFS — those whose columns
    the cohort has.

    Parameters
    ----------
    cohort : pandas.DataFrame
        Validated cohort with a ``regimen`` column (A/B).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`; counts as ``n (%)``, continuous variables as
        ``median (range)``, censored times as ``KM median (95 % CI)``. ``test`` names the
        test behind ``p``.

    Raises
    ------
    stats.StatsError
        No ``regimen`` column.
    """
    if "regimen" not in cohort.columns:
        raise stats.StatsError("Table 2 compares regimens: the cohort has no regimen column")
    c = cohort
    a, b = c["regimen"] == "A", c["regimen"] == "B"
    n_all, n_a, n_b = int((a | b).sum()), int(a.sum()), int(b.sum())
    if n_a == 0 or n_b == 0:
        raise stats.StatsError(f"Table 2 compares regimens, but {n_a} patients have regimen A "
                               f"and {n_b} regimen B")
    both = a | b
    rows: list[list[str]] = [["Patients, no.", str(n_all), str(n_a), str(n_b), "", ""]]

    def add(label, fmt, p_and_test=("", "")):
        rows.append([label, fmt(both), fmt(a), fmt(b), *p_and_test])

    def proportions(column: str, categories: list, labels: list[str], title: str,
                    keep_missing: bool = False) -> None:
        values = c[column]
        if keep_missing:
            values = values.fillna("NA")
        table = [[int(((values == cat) & grp).sum()) for cat in categories] for grp in (a, b)]
        rows.append([title, "", "", "", *_guarded(lambda: stats.compare_proportions(table))])
        for cat, label in zip(categories, labels, strict=True):
            add(f"  {label}", lambda g, cat=cat: count_pct((values == cat) & g, int(g.sum())))

    if "age" in c:
        add("Median age (range), y", lambda g: median_range(c.loc[g, "age"]),
            _guarded(lambda: stats.compare_two_groups(c.loc[a, "age"], c.loc[b, "age"])))
    if "sex" in c:
        proportions("sex", ["M", "F"], ["Male", "Female"], "Sex, no. (%)")
    if "rai_stage" in c:
        stage = pd.Series(np.where(c["rai_stage"] >= 3, "III-IV",
                                   np.where(c["rai_stage"].notna(), "0-II", None)), index=c.index)
        c = c.assign(_rai=stage)
        proportions("_rai", ["0-II", "III-IV"], ["0-II", "III-IV"], "Rai stage, no. (%)")
    if "alc" in c:
        add("Median baseline ALC (range), ×10⁹/L", lambda g: median_range(c.loc[g, "alc"]),
            _guarded(lambda: stats.compare_two_groups(c.loc[a, "alc"], c.loc[b, "alc"])))
    if "zap70" in c:
        proportions("zap70", ["positive", "negative", "NA"], ["Positive", "Negative", "NA"],
                    "ZAP-70, no. (%)", keep_missing=True)
    if "tfr_grade" in c:
        grade = c["tfr_grade"].astype(float)
        tfr = grade > 0
        table = [[int((tfr & g).sum()), int(((grade == 0) & g).sum())] for g in (a, b)]
        add("TFR, no. (%)", lambda g: count_pct(tfr & g, int(g.sum())),
            _guarded(lambda: stats.compare_proportions(table)))
        high = [[int(((grade >= 2) & g).sum()), int(((grade == 1) & g).sum())] for g in (a, b)]
        rows.append(["  Grade 2 or more, of TFRs", "", "", "",
                     *_guarded(lambda: stats.compare_proportions(high))])
        for k in (1, 2, 3, 4):
            if k == 4 and not (grade == 4).any():
                continue
            add(f"  Grade {k}", lambda g, k=k: count_pct((grade == k) & g, int((tfr & g).sum())))
        if "tfr_onset_days" in c:
            t = c["tfr_onset_days"]
            add("Median time to onset (range), d", lambda g: median_range(t[g & tfr]),
                _guarded(lambda: stats.logrank(t[a & tfr], np.ones(int((a & tfr).sum())),
                                               t[b & tfr], np.ones(int((b & tfr).sum())))))
        if "tfr_duration_days" in c:
            t = c["tfr_duration_days"]
            one = pd.Series(1.0, index=c.index)
            add("Median duration (95% CI), d", lambda g: _km_text(t[g & tfr], one[g & tfr]),
                _guarded(lambda: stats.logrank(t[a & tfr], one[a & tfr], t[b & tfr],
                                               one[b & tfr])))
    if "response" in c:
        resp = c["response"]
        known = resp.notna()
        responded = resp.isin(["CR", "PR"])
        orr = [[int((responded & g).sum()), int((~responded & known & g).sum())]
               for g in (a, b)]
        add("ORR (CR + PR), no. (%)", lambda g: count_pct(responded & g, int((known & g).sum())),
            _guarded(lambda: stats.compare_proportions(orr)))
        cr = resp == "CR"
        crt = [[int((cr & g).sum()), int((~cr & known & g).sum())] for g in (a, b)]
        add("CR, no. (%)", lambda g: count_pct(cr & g, int((known & g).sum())),
            _guarded(lambda: stats.compare_proportions(crt)))
    if {"pfs_months", "pfs_event"} <= set(c.columns):
        t, e = c["pfs_months"], c["pfs_event"]
        add("Median PFS (95% CI), months", lambda g: _km_text(t[g], e[g]),
            _guarded(lambda: stats.logrank(t[a], e[a], t[b], e[b])))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def tfr_risk_factors(cohort: pd.DataFrame) -> pd.DataFrame:
    """Baseline features of patients with and without a TFR (the study's "Risk Factors").

    Returns
    -------
    pandas.DataFrame
        Columns ``characteristic``, ``tfr``, ``no_tfr``, ``p``, ``test``: age and ALC
        (Wilcoxon), Rai III-IV, sex and ZAP-70 (χ²/Fisher rule), and regimen.
    """
    if "tfr_grade" not in cohort.columns:
        raise stats.StatsError("risk factors need a tfr_grade column")
    c = cohort[cohort["tfr_grade"].notna()]
    grade = c["tfr_grade"].astype(float)
    yes, no = grade > 0, grade == 0
    rows = []
    for column, label in (("age", "Median age (range), y"),
                          ("alc", "Median baseline ALC (range), ×10⁹/L")):
        if column in c:
            rows.append([label, median_range(c.loc[yes, column]), median_range(c.loc[no, column]),
                         *_guarded(lambda column=column: stats.compare_two_groups(
                             c.loc[yes, column], c.loc[no, column]))])

    def categorical(label: str, values: pd.Series, categories: list) -> None:
        table = [[int(((values == k) & g).sum()) for k in categories] for g in (yes, no)]
        first = categories[-1]
        rows.append([f"{label}: {first}, no. (%)",
                     count_pct((values == first) & yes, int((values.notna() & yes).sum())),
                     count_pct((values == first) & no, int((values.notna() & no).sum())),
                     *_guarded(lambda: stats.compare_proportions(table))])

    if "rai_stage" in c:
        stage = pd.Series(np.where(c["rai_stage"] >= 3, "III-IV",
                                   np.where(c["rai_stage"].notna(), "0-II", None)), index=c.index)
        categorical("Rai stage", stage, ["0-II", "III-IV"])
    if "sex" in c:
        categorical("Sex", c["sex"], ["M", "F"])
    if "zap70" in c:
        categorical("ZAP-70", c["zap70"], ["negative", "positive"])
    if "regimen" in c:
        categorical("Regimen", c["regimen"], ["A", "B"])
    return pd.DataFrame(rows, columns=["characteristic", "tfr", "no_tfr", "p", "test"])


def immune_by_tfr_grade(cohort: pd.DataFrame) -> pd.DataFrame:
    """Immune markers of patients with a TFR, by grade group (the study's Figure 2).

    For each marker with values: median (range) in grade 1 and in grades ≥ 2; the
    Wilcoxon test of the two groups; logistic regression of grade ≥ 2 on the log marker
    (Wald); and the Kruskal–Wallis test across the grades present (1, 2, 3, and 4 if any).

    Returns
    -------
    pandas.DataFrame
        One row per marker and test: ``marker``, ``grade_1``, ``grade_2_3``, ``n_grade_1``,
        ``n_grade_2_3``, ``comparison``, ``p``, ``test``.
    """
    if "tfr_grade" not in cohort.columns:
        raise stats.StatsError("immune markers by grade need a tfr_grade column")
    grade = cohort["tfr_grade"].astype(float)
    rows = []
    for column, (label, _unit) in MARKERS.items():
        if column not in cohort:
            continue
        v = pd.to_numeric(cohort[column], errors="coerce")
        have = v.notna() & (grade >= 1)
        if not have.any():
            continue
        low, high = have & (grade == 1), have & (grade >= 2)
        base = [label, median_range(v[low]), median_range(v[high]), int(low.sum()),
                int(high.sum())]
        rows.append([*base, "grade 1 vs 2-3",
                     *_guarded(lambda v=v, low=low, high=high:
                               stats.compare_two_groups(v[low], v[high]))])
        rows.append([*base, "grade 2-3 vs 1, per log unit",
                     *_guarded(lambda v=v, have=have: stats.logistic_association(
                         v[have], grade[have] >= 2))])
        present = [k for k in (1, 2, 3, 4) if (have & (grade == k)).any()]
        rows.append([*base, f"grades {', '.join(map(str, present))}",
                     *_guarded(lambda v=v, have=have, present=present: stats.compare_groups(
                         *(v[have & (grade == k)] for k in present)))])
    if not rows:
        raise stats.StatsError("no immune marker values (nk_per_ul, cd4_per_ul, cd8_per_ul, "
                               "cd4_cd8_ratio) in patients with a TFR — join profiles.csv "
                               "with --profiles")
    return pd.DataFrame(rows, columns=["marker", "grade_1", "grade_2_3", "n_grade_1",
                                       "n_grade_2_3", "comparison", "p", "test"])


def cr_by_tfr_grade(cohort: pd.DataFrame) -> pd.DataFrame:
    """Complete-response rate by TFR grade (the study's Figure 3), with the test of trend-free
    association (χ²/Fisher rule on the grade × CR table) in the last row's ``p``/``test``.

    Returns
    -------
    pandas.DataFrame
        ``tfr_grade``, ``patients``, ``cr``, ``cr_rate`` (fraction), ``p``, ``test``.
    """
    if not {"tfr_grade", "response"} <= set(cohort.columns):
        raise stats.StatsError("CR by TFR grade needs tfr_grade and response columns")
    c = cohort[cohort["tfr_grade"].notna() & cohort["response"].notna()]
    grade = c["tfr_grade"].astype(int)
    rows, table = [], []
    for k in sorted(grade.unique()):
        sel = grade == k
        n, cr = int(sel.sum()), int((c.loc[sel, "response"] == "CR").sum())
        rows.append([int(k), n, cr, round(cr / n, 3) if n else np.nan])
        table.append([cr, n - cr])
    if not rows:
        raise stats.StatsError("no patient has both a TFR grade and a response")
    out = pd.DataFrame(rows, columns=["tfr_grade", "patients", "cr", "cr_rate"])
    p, test = _guarded(lambda: stats.compare_proportions(table))
    out["p"], out["test"] = "", ""
    if len(out):
        out.loc[out.index[-1], ["p", "test"]] = [p, test]
    return out
