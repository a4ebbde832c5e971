"""The simulated reference cohort honours every published number it claims to
(immunoprofile.study.reference_cohort.PUBLISHED and PUBLISHED_P_VALUES)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from immunoprofile.study import statistics as S
from immunoprofile.study.cohort_stats import immune_by_tfr_grade, table2, tfr_risk_factors
from immunoprofile.study.reference_cohort import (
    PUBLISHED,
    PUBLISHED_P_VALUES,
    SIMULATED_NOTE,
    reference_cohort,
)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return reference_cohort()


def groups(c):
    return {"A": c[c.regimen == "A"], "B": c[c.regimen == "B"], "all": c}


def median_range(v):
    v = pd.Series(v).dropna()
    return (v.median(), v.min(), v.max())


def test_labelled_simulated_and_deterministic(cohort):
    assert cohort.attrs["simulated"] == SIMULATED_NOTE
    assert "SIMULATED" in SIMULATED_NOTE
    pd.testing.assert_frame_equal(cohort, reference_cohort())


def test_group_sizes_and_grades(cohort):
    g = groups(cohort)
    assert {k: len(g[k]) for k in "AB"} == PUBLISHED["patients"]
    for k in "AB":
        counts = g[k].tfr_grade.value_counts().reindex(range(4), fill_value=0)
        assert counts.to_dict() == PUBLISHED["tfr_grade_counts"][k]


def test_ages(cohort):
    g = groups(cohort)
    for k, target in PUBLISHED["age_median_range"].items():
        assert median_range(g[k].age) == target
    tfr = cohort.tfr_grade > 0
    assert cohort.age[tfr].median() == PUBLISHED["age_median_by_tfr"]["tfr"]
    assert cohort.age[~tfr].median() == PUBLISHED["age_median_by_tfr"]["no_tfr"]


def test_sex_rai_zap70_counts(cohort):
    g = groups(cohort)
    for k in "AB":
        assert g[k].sex.value_counts().to_dict() == PUBLISHED["sex_counts"][k]
        rai = np.where(g[k].rai_stage >= 3, "III-IV", "0-II")
        assert pd.Series(rai).value_counts().to_dict() == PUBLISHED["rai_counts"][k]
        zap = g[k].zap70.fillna("NA").value_counts().to_dict()
        assert zap == PUBLISHED["zap70_counts"][k]
    tfr = cohort.tfr_grade > 0
    iii_iv = cohort.rai_stage >= 3
    assert int((iii_iv & tfr).sum()) == PUBLISHED["rai_iii_iv_by_tfr"]["tfr"]
    assert int((iii_iv & ~tfr).sum()) == PUBLISHED["rai_iii_iv_by_tfr"]["no_tfr"]


def test_alc(cohort):
    g = groups(cohort)
    for k, target in PUBLISHED["alc_median_range"].items():
        assert median_range(g[k].alc) == pytest.approx(target)


def test_immune_subset(cohort):
    subset = cohort[cohort.nk_per_ul.notna()]
    assert subset[["cd4_per_ul", "cd8_per_ul"]].notna().all().all()
    assert cohort.loc[cohort.nk_per_ul.isna(), ["cd4_per_ul", "cd8_per_ul"]].isna().all().all()
    low, high = subset[subset.tfr_grade == 1], subset[subset.tfr_grade >= 2]
    assert {"grade_1": len(low), "grade_2_3": len(high)} == PUBLISHED["immune_subset_sizes"]
    for marker in ("nk", "cd4", "cd8"):
        target = PUBLISHED[f"{marker}_median_range"]
        assert median_range(low[f"{marker}_per_ul"]) == target["grade_1"], marker
        assert median_range(high[f"{marker}_per_ul"]) == target["grade_2_3"], marker
    np.testing.assert_allclose(subset.cd4_cd8_ratio, subset.cd4_per_ul / subset.cd8_per_ul)
    # Immune cells are part of the lymphocytes: NK + CD4 + CD8 below the ALC (cells/uL).
    cells = subset.nk_per_ul + subset.cd4_per_ul + subset.cd8_per_ul
    assert (cells < 1000 * subset.alc).all()


def test_response(cohort):
    g = groups(cohort)
    for k in "AB":
        assert int((g[k].response == "CR").sum()) == PUBLISHED["cr_counts"][k]
        assert int(g[k].response.isin(["CR", "PR"]).sum()) == PUBLISHED["orr_counts"][k]
    for grade, (cr, n) in PUBLISHED["cr_by_tfr_grade"].items():
        sel = cohort.tfr_grade == grade
        assert (int((cohort.response[sel] == "CR").sum()), int(sel.sum())) == (cr, n)
    subset = cohort[cohort.nk_per_ul.notna()]
    responded = subset.response.isin(["CR", "PR"])
    target = PUBLISHED["nk_median_range_by_response"]
    assert median_range(subset.nk_per_ul[responded]) == target["responders"]
    assert median_range(subset.nk_per_ul[~responded]) == target["non_responders"]
    assert int((subset.response == "CR").sum()) == PUBLISHED["subset_cr"]
    assert int((subset.response == "SD").sum()) == PUBLISHED["subset_sd"]


def test_tfr_times_and_pfs(cohort):
    tfr = cohort[cohort.tfr_grade > 0]
    assert cohort.loc[cohort.tfr_grade == 0, ["tfr_onset_days", "tfr_duration_days"]] \
        .isna().all().all()
    g = groups(tfr)
    for k, target in PUBLISHED["onset_median_range"].items():
        assert median_range(g[k].tfr_onset_days) == target
    for k, target in PUBLISHED["duration_km_median"].items():
        d = g[k].tfr_duration_days
        assert S.kaplan_meier_median(d, np.ones(len(d))).median == target
    cg = groups(cohort)
    by = {"A": cg["A"], "B": cg["B"], "tfr": cohort[cohort.tfr_grade > 0],
          "no_tfr": cohort[cohort.tfr_grade == 0]}
    for k, target in PUBLISHED["pfs_km_median"].items():
        km = S.kaplan_meier_median(by[k].pfs_months, by[k].pfs_event)
        assert km.median == pytest.approx(target), k


def _p_of(table: pd.DataFrame, characteristic_start: str, comparison: str | None = None):
    rows = table[table.iloc[:, 0].str.startswith(characteristic_start)]
    if comparison is not None:
        rows = rows[rows.comparison == comparison]
    assert len(rows) == 1, characteristic_start
    return rows.iloc[0]


def test_published_p_values_reproduced(cohort):
    """Every P value the rows claim (PUBLISHED_P_VALUES), through the cohort-stats tables."""
    t2, risk, immune = table2(cohort), tfr_risk_factors(cohort), immune_by_tfr_grade(cohort)
    found = {
        "age, TFR vs no TFR (Wilcoxon)": _p_of(risk, "Median age"),
        "age, A vs B (Wilcoxon)": _p_of(t2, "Median age"),
        "ALC, A vs B (Wilcoxon)": _p_of(t2, "Median baseline ALC"),
        "NK, grade 1 vs 2-3 (Wilcoxon)": _p_of(immune, "NK", "grade 1 vs 2-3"),
        "CD4, grade 2-3 vs 1 (logistic, log count)":
            _p_of(immune, "CD4+", "grade 2-3 vs 1, per log unit"),
        "CD8, grade 2-3 vs 1 (logistic, log count)":
            _p_of(immune, "CD8+", "grade 2-3 vs 1, per log unit"),
        "CD4/CD8 ratio, grades 1/2/3 (Kruskal-Wallis)":
            _p_of(immune, "CD4/CD8", "grades 1, 2, 3"),
        "time to onset, A vs B (log-rank)": _p_of(t2, "Median time to onset"),
        "TFR duration, A vs B (log-rank)": _p_of(t2, "Median duration"),
        "PFS, A vs B (log-rank)": _p_of(t2, "Median PFS"),
    }
    for key, row in found.items():
        assert row.p == PUBLISHED_P_VALUES[key], key
    expected_tests = {"Wilcoxon": S.WILCOXON_NORMAL, "logistic": S.LOGISTIC_WALD,
                      "Kruskal": S.KRUSKAL_WALLIS, "log-rank": S.LOGRANK}
    for key, row in found.items():
        assert any(k in key and row.test == t for k, t in expected_tests.items()), key
    # The two that are not in a cohort-stats table: NK by response, PFS by TFR.
    subset = cohort[cohort.nk_per_ul.notna()]
    nk_response = S.logistic_association(subset.nk_per_ul,
                                         subset.response.isin(["CR", "PR"]))
    key = "NK, response vs none (logistic, log count)"
    assert nk_response.format_p() == PUBLISHED_P_VALUES[key]
    tfr = cohort.tfr_grade > 0
    pfs = S.logrank(cohort.pfs_months[tfr], cohort.pfs_event[tfr],
                    cohort.pfs_months[~tfr], cohort.pfs_event[~tfr])
    assert pfs.format_p() == PUBLISHED_P_VALUES["PFS, TFR vs no TFR (log-rank)"]
    assert len(PUBLISHED_P_VALUES) == len(found) + 2


def test_table2_count_p_values_on_the_reference_cohort(cohort):
    """Table 2's count-determined P values, from the rows (the counts honour Table 2)."""
    t2 = table2(cohort)
    expected = {"Sex": (".46", S.FISHER), "Rai stage": (".84", S.CHI_SQUARE),
                "ZAP-70": ("1.00", S.FISHER), "TFR, no.": (".83", S.CHI_SQUARE),
                "  Grade 2 or more": (".05", S.FISHER), "ORR": (".36", S.CHI_SQUARE),
                "CR, no.": ("1.00", S.FISHER)}
    for start, (p, test) in expected.items():
        row = _p_of(t2, start)
        assert (row.p, row.test) == (p, test), start
    risk = tfr_risk_factors(cohort)
    row = _p_of(risk, "Rai stage")
    assert (row.p, row.test) == (".08", S.CHI_SQUARE)
    # "no significant association between TFR and gender, ... ALC, or ZAP-70 (P > .1)"
    for start in ("Sex", "Median baseline ALC", "ZAP-70"):
        assert float(_p_of(risk, start).p) > 0.1, start
