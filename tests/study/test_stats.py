"""immunoprofile.study.statistics: known answers worked out by hand, the χ²/Fisher rule, and every P
value of the study that its printed counts determine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from immunoprofile.study import statistics as S

# --- known answers (worked by hand; the working is in each comment) ---------------------------


def test_fisher_2x2_lady_tasting_tea():
    # Margins 4/4 of 8: P(x) = C(4,x)C(4,4-x)/70 = 1,16,36,16,1 /70. Observed x=3 (16/70);
    # two-sided = tables no more likely = (1+16+16+1)/70.
    r = S.fisher_exact([[3, 1], [1, 3]])
    assert r.pvalue == pytest.approx(34 / 70)
    assert r.statistic == pytest.approx(9.0)  # sample odds ratio 3*3/(1*1)
    assert r.test == S.FISHER


def test_fisher_rxc_enumerated_by_hand():
    # Rows (2, 2), columns (2, 1, 1), n = 4: first-row tables (2,0,0), (1,1,0), (1,0,1),
    # (0,1,1) with probabilities 1, 2, 2, 1 over C(4,2) = 6. Observed (2,0,0): 1/6; as or
    # less likely: (2,0,0) and (0,1,1) -> 2/6.
    r = S.fisher_exact([[2, 0, 0], [0, 1, 1]])
    assert r.pvalue == pytest.approx(1 / 3)
    assert r.statistic == pytest.approx(1 / 6)
    assert r.detail["tables"] == 4


def test_fisher_rxc_agrees_with_scipy_sampling_and_transpose():
    table = np.array([[8, 2, 3], [1, 5, 4]])
    exact = S.fisher_exact(table).pvalue
    mc = sps.fisher_exact(table, method=sps.MonteCarloMethod(
        n_resamples=200_000, rng=np.random.default_rng(1))).pvalue
    assert exact == pytest.approx(mc, abs=0.004)
    assert S.fisher_exact(table.T).pvalue == pytest.approx(exact, rel=1e-12)
    assert S.fisher_exact([[3, 1, 0], [1, 3, 0]]).pvalue == pytest.approx(34 / 70)


def test_fisher_rxc_falls_back_to_sampling_when_huge(monkeypatch):
    assert S.count_tables(np.array([2, 2]), np.array([2, 1, 1]), 100) == 4  # by hand above
    assert S.count_tables(np.array([13, 10]), np.array([9, 7, 7]), 10**6) == 53
    monkeypatch.setattr(S, "MAX_FISHER_TABLES", 10)
    # Counted first, so the sampling is chosen without enumerating 53 tables.
    monkeypatch.setattr(S, "_fisher_rxc_enumerate", lambda counts: pytest.fail("enumerated"))
    r = S.fisher_exact([[8, 2, 3], [1, 5, 4]])
    assert "Monte Carlo" in r.test
    assert 0.03 < r.pvalue < 0.09


def test_chi_square_by_hand():
    # [[10, 20], [20, 10]]: every expected count 15; chi2 = 4 * 5^2 / 15 = 20/3, 1 df.
    r = S.compare_proportions([[10, 20], [20, 10]])
    assert r.test == S.CHI_SQUARE
    assert r.statistic == pytest.approx(20 / 3)
    # P(chi2 with 1 df > x) = erfc(sqrt(x / 2))
    assert r.pvalue == pytest.approx(math.erfc(math.sqrt(10 / 3)))
    assert r.detail == {"dof": 1, "min_expected": 15.0}


def test_rule_switches_to_fisher_below_expected_5():
    # [[6, 4], [4, 6]]: expected 5 everywhere -> chi2; [[6, 3], [4, 6]]: 4.7 -> Fisher.
    assert S.compare_proportions([[6, 4], [4, 6]]).test == S.CHI_SQUARE
    r = S.compare_proportions([[6, 3], [4, 6]])
    assert r.test == S.FISHER
    assert r.detail["min_expected"] == pytest.approx(9 * 9 / 19)


def test_compare_proportions_refuses_bad_tables():
    for bad in ([1, 2, 3], [[1, -1], [2, 2]], [[1.5, 2], [2, 2]], [[np.nan, 1], [1, 1]]):
        with pytest.raises(S.StatsError):
            S.compare_proportions(bad)
    with pytest.raises(S.StatsError, match="nothing to compare"):
        S.compare_proportions([[3, 0], [4, 0]])  # one non-empty column: no comparison


def test_wilcoxon_normal_approximation_by_hand():
    # a = 1,2,3; b = 4,5,6: U_a = 0; mean 4.5; var = 3*3*7/12 = 5.25;
    # z = (0 - 4.5 + 0.5)/sqrt(5.25); P = 2 Phi(z) = erfc(|z|/sqrt 2).
    r = S.compare_two_groups([1, 2, 3], [4, 5, 6])
    z = 4 / math.sqrt(5.25)
    assert r.statistic == 0.0
    assert r.pvalue == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert r.test == S.WILCOXON_NORMAL


def test_wilcoxon_exact_by_hand():
    # 20 equally likely splits of 6 values into 3 + 3; U = 0 and U = 9 are the 2 extremes.
    r = S.compare_two_groups([1, 2, 3], [4, 5, 6], exact=True)
    assert r.pvalue == pytest.approx(2 / 20)
    assert r.test == S.WILCOXON_EXACT
    # With a tie the permutation distribution is enumerated; still 2 of 20 extremes.
    assert S.compare_two_groups([1, 2, 3], [3.5, 5, 5], exact=True).pvalue == \
        pytest.approx(2 / 20)


def test_wilcoxon_exact_with_ties_uses_sas_two_sided_definition():
    # SAS: P = Pr(|S - E S| >= |s - E S|) over all C(9, 5) = 126 splits of the mid-ranks.
    # Checked here by brute force; scipy's permutation test (2 x one-sided) gives .254.
    from itertools import combinations

    a, b = [1, 2, 2, 2, 5], [2, 2, 6, 7]
    ranks = sps.rankdata(a + b)
    expected = 5 * 10 / 2
    observed = abs(ranks[:5].sum() - expected)
    sums = [ranks[list(c)].sum() for c in combinations(range(9), 5)]
    brute = np.mean([abs(x - expected) >= observed - 1e-9 for x in sums])
    r = S.compare_two_groups(a, b, exact=True)
    assert r.pvalue == pytest.approx(brute) == pytest.approx(26 / 126)
    assert r.test == S.WILCOXON_EXACT


def test_wilcoxon_drops_missing_and_refuses_empty():
    r = S.compare_two_groups([1, 2, 3, np.nan], [4, 5, 6])
    assert r.detail["n_a"] == 3
    with pytest.raises(S.StatsError, match="no values"):
        S.compare_two_groups([np.nan], [1, 2])


def test_kruskal_wallis_by_hand():
    # [1,2], [3,4], [5,6]: rank sums 3, 7, 11; H = 12/(6*7) * (9+49+121)/2 - 3*7 = 32/7;
    # with 2 df, P = exp(-H/2).
    r = S.compare_groups([1, 2], [3, 4], [5, 6])
    assert r.statistic == pytest.approx(32 / 7)
    assert r.pvalue == pytest.approx(math.exp(-16 / 7))
    assert r.test == S.KRUSKAL_WALLIS


def test_logistic_on_a_binary_marker_is_the_woolf_odds_ratio():
    # x = 0: 3 of 10 with the outcome; x = 1: 6 of 10. The slope is the log odds ratio
    # log((6/4)/(3/7)) and its Wald SE Woolf's sqrt(1/3 + 1/7 + 1/6 + 1/4).
    x = np.r_[np.zeros(10), np.ones(10)]
    y = np.r_[np.ones(3), np.zeros(7), np.ones(6), np.zeros(4)]
    r = S.logistic_association(x, y, log=False)
    se = math.sqrt(1 / 3 + 1 / 7 + 1 / 6 + 1 / 4)
    assert r.detail["coef"] == pytest.approx(math.log(3.5), rel=1e-6)
    assert r.detail["se"] == pytest.approx(se, rel=1e-6)
    z = math.log(3.5) / se
    assert r.statistic == pytest.approx(z * z, rel=1e-6)
    assert r.pvalue == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-6)


def test_logistic_clear_errors():
    with pytest.raises(S.StatsError, match="> 0"):
        S.logistic_association([0, 1, 2, 3], [0, 1, 0, 1])
    with pytest.raises(S.StatsError, match="both outcomes"):
        S.logistic_association([1, 2, 3], [1, 1, 1])
    with pytest.raises(S.StatsError, match="separated|converge|failed"):
        S.logistic_association([1, 2, 3, 10, 20, 30], [0, 0, 0, 1, 1, 1])


def test_logrank_by_hand():
    # a: events at 1, 2; b: events at 3, 4. At t=1: 4 at risk, 2 in a -> E_a 1/2, V 1/4;
    # t=2: 3 at risk, 1 in a -> E_a 1/3, V 2/9; later a has no one at risk.
    # O-E = 2 - 5/6 = 7/6; V = 17/36; chi2 = 49/17.
    r = S.logrank([1, 2], [1, 1], [3, 4], [1, 1])
    assert r.statistic == pytest.approx(49 / 17)
    assert r.pvalue == pytest.approx(math.erfc(math.sqrt(49 / 34)))
    assert r.test == S.LOGRANK


def test_kaplan_meier_median_by_hand():
    # No censoring: S = .8, .6, .4 at 1, 2, 3 -> median 3.
    assert S.kaplan_meier_median([1, 2, 3, 4, 5], [1] * 5).median == 3
    # Censored at 2: S(1) = 3/4, S(3) = 3/4 * 1/2 = 3/8 -> median 3.
    km = S.kaplan_meier_median([1, 2, 3, 4], [1, 0, 1, 1])
    assert km.median == 3 and km.events == 3
    assert math.isnan(S.kaplan_meier_median([1, 2], [0, 0]).median)
    # S = .75, .5, .25 at 1, 2, 3: the curve sits on 0.5 from 2 to 3 -> SAS's midpoint 2.5
    # (statsmodels' own quantile would say 3).
    assert S.kaplan_meier_median([1, 2, 3, 4], [1, 1, 1, 1]).median == 2.5
    with pytest.raises(S.StatsError, match="event flags"):
        S.kaplan_meier_median([1, 2], [1, 2])


@pytest.mark.parametrize("p, text", [(1.0, "1.00"), (0.9951, "1.00"), (0.4559, ".46"),
                                     (0.0485, ".05"), (0.0042, ".004"), (0.0004, "<.001"),
                                     (float("nan"), "NA")])
def test_format_pvalue(p, text):
    assert S.format_pvalue(p) == text


# --- the study's P values that its printed counts determine -----------------------------------
# (label, table, published P, the test the rule must choose). Counts from Table 2 and the
# Results of Chanan-Khan et al., Cancer 2011; rows are Group A / Group B unless noted.
STUDY_COUNT_TABLES = [
    ("sex, M/F", [[22, 7], [14, 2]], ".46", S.FISHER),
    ("Rai 0-II / III-IV", [[10, 19], [6, 10]], ".84", S.CHI_SQUARE),
    ("ZAP-70 positive / negative / NA", [[15, 8, 6], [8, 5, 3]], "1.00", S.FISHER),
    ("TFR yes / no (text: P = .83, chi-square)", [[19, 10], [11, 5]], ".83", S.CHI_SQUARE),
    ("TFR grade 2-3 / grade 1, of TFRs (9 of 19 vs 1 of 11)", [[9, 10], [1, 10]], ".05",
     S.FISHER),
    ("ORR: responders / not (48% of 29, 63% of 16)", [[14, 15], [10, 6]], ".36",
     S.CHI_SQUARE),
    ("CR / no CR (5 of 29, 3 of 16)", [[5, 24], [3, 13]], "1.00", S.FISHER),
    # Risk factors (rows TFR / no TFR): Rai III-IV in 73% of 30 vs 47% of 15
    ("Rai III-IV / 0-II by TFR", [[22, 8], [7, 8]], ".08", S.CHI_SQUARE),
    # TFR in bulky (65%, n = 17 of 26) vs non-bulky (63%, n = 5 of 8) disease
    ("TFR by bulky disease", [[17, 9], [5, 3]], "1.00", S.FISHER),
]


@pytest.mark.parametrize("label, table, published, test", STUDY_COUNT_TABLES,
                         ids=[t[0] for t in STUDY_COUNT_TABLES])
def test_study_p_values_from_counts(label, table, published, test):
    result = S.compare_proportions(table)
    assert result.test == test
    assert result.format_p() == published
