"""The study's statistical tests, as its Methods state them.

Chanan-Khan et al. (*Cancer* 2011) compared groups with SAS 9.1:

- two groups of a continuous variable: the Wilcoxon–Mann–Whitney test (SAS ``NPAR1WAY``
  reports the normal approximation with a continuity correction of 0.5 and a tie-corrected
  variance; the exact test on request) — :func:`compare_two_groups`;
- three groups: the Kruskal–Wallis test — :func:`compare_groups`;
- discrete variables: Pearson's χ² test, replaced by Fisher's exact test when the χ²
  assumptions fail, i.e. when any expected count is below 5 — :func:`compare_proportions`;
- T-cell counts against TFR grade 2–3 vs lower: logistic regression on the logarithm of the
  count, with the Wald P value — :func:`logistic_association`;
- censored times: Kaplan–Meier medians with 95 % confidence intervals and the log-rank
  test — :func:`kaplan_meier_median`, :func:`logrank`.

Every function returns a :class:`TestResult` whose ``test`` names the test that was
actually used, so a reader of a table sees which rule applied. The computations are
scipy's and statsmodels'; the only one written here is the exact r×c Fisher test, because
scipy (1.17) offers r×c tables only by Monte Carlo or permutation sampling, and a P value
that changes from run to run does not belong in a clinical table.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ..errors import StatsError

#: χ² is trusted only when every expected count reaches this (the study's rule).
MIN_EXPECTED_COUNT = 5.0
#: Exact r×c Fisher tests enumerate at most this many tables; larger ones are sampled.
MAX_FISHER_TABLES = 500_000
#: Relative tolerance when comparing table probabilities with the observed one (as R's
#: ``fisher.test``): tables equally likely up to rounding count as "as extreme".
_FISHER_REL_TOL = 1e-7

CHI_SQUARE = "Pearson chi-square"
FISHER = "Fisher exact (two-sided)"
WILCOXON_NORMAL = "Wilcoxon-Mann-Whitney (normal approximation, continuity-corrected)"
WILCOXON_EXACT = "Wilcoxon-Mann-Whitney (exact)"
KRUSKAL_WALLIS = "Kruskal-Wallis"
LOGISTIC_WALD = "logistic regression (Wald)"
LOGRANK = "log-rank"


@dataclass(frozen=True)
class TestResult:
    """The outcome of one statistical test.

    Attributes
    ----------
    test : str
        The test that produced the P value (e.g. ``"Fisher exact (two-sided)"``).
    statistic : float
        The test statistic: χ² (Pearson, log-rank, Kruskal–Wallis H), the Mann–Whitney U of
        the first group, the Wald χ² of a logistic slope, the odds ratio of a 2×2 Fisher
        test, or the probability of the observed table of an r×c Fisher test.
    pvalue : float
        Two-sided P value.
    detail : dict
        Test-specific extras: degrees of freedom, smallest expected count, coefficient,
        odds ratio and its 95 % CI, group sizes.
    """

    __test__ = False  # not a pytest test class, despite the name

    test: str
    statistic: float
    pvalue: float
    detail: dict = field(default_factory=dict)

    def format_p(self) -> str:
        """The P value as the study prints it: two decimals, three below .01 (``.004``)."""
        return format_pvalue(self.pvalue)


def format_pvalue(p: float) -> str:
    """Format a P value as journals (and the study) print it.

    Parameters
    ----------
    p : float
        P value in [0, 1].

    Returns
    -------
    str
        ``"1.00"``, ``".46"``, ``".05"``, ``".004"`` or ``"<.001"``; ``"NA"`` for NaN.
    """
    if not np.isfinite(p):
        return "NA"
    if p >= 0.995:
        return "1.00"
    if p < 0.001:
        return "<.001"
    text = f"{p:.2f}" if round(p, 2) >= 0.01 and p >= 0.01 else f"{p:.3f}"
    return text[1:] if text.startswith("0") else text


# --- discrete variables --------------------------------------------------------------------

def compare_proportions(table: ArrayLike) -> TestResult:
    """Pearson χ² on an r×c count table, or Fisher's exact test when χ² is not valid.

    The rule is the study's: χ² (without continuity correction, as SAS ``PROC FREQ``
    reports it) when every expected count is at least 5, otherwise Fisher's exact test,
    two-sided, exact for r×c tables too.

    Parameters
    ----------
    table : array_like of int, shape (r, c)
        Counts (patients); rows are groups, columns categories (or the reverse). Rows or
        columns that are all zero are dropped first.

    Returns
    -------
    TestResult
        ``detail`` has ``min_expected`` and, for χ², ``dof``; for a 2×2 Fisher test the
        sample odds ratio is the statistic.

    Raises
    ------
    StatsError
        Negative or non-integer counts, or fewer than two non-empty rows or columns (no
        comparison to make: reported as P "NA", never as 1.00).
    """
    from scipy import stats as sps

    counts = _count_table(table)
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        raise StatsError("nothing to compare: fewer than two non-empty rows or columns "
                         f"in the count table {np.asarray(table).tolist()}")
    expected = sps.contingency.expected_freq(counts)
    min_expected = float(expected.min())
    if min_expected >= MIN_EXPECTED_COUNT:
        chi2 = sps.chi2_contingency(counts, correction=False)
        return TestResult(CHI_SQUARE, float(chi2.statistic), float(chi2.pvalue),
                          {"dof": int(chi2.dof), "min_expected": min_expected})
    result = fisher_exact(counts)
    detail = dict(result.detail, min_expected=min_expected)
    return TestResult(result.test, result.statistic, result.pvalue, detail)


def fisher_exact(table: ArrayLike) -> TestResult:
    """Fisher's exact test, two-sided, on a 2×2 or r×c table.

    2×2 tables use :func:`scipy.stats.fisher_exact`. Larger tables are enumerated: every
    table with the observed margins is visited, and the P value is the total
    probability (multivariate hypergeometric) of the tables no more likely than the
    observed one — the definition of SAS ``EXACT FISHER`` and R's ``fisher.test``.
    The tables are counted first (cheaply, without visiting them); when there are more
    than :data:`MAX_FISHER_TABLES` (enumeration runs at roughly 10⁵ tables/s) the P value
    is sampled instead (scipy's Monte Carlo, 100 000 tables, fixed seed), and ``test``
    says so.

    Parameters
    ----------
    table : array_like of int, shape (r, c)

    Returns
    -------
    TestResult
        Statistic: the sample odds ratio (2×2) or the probability of the observed table.
    """
    from scipy import stats as sps

    counts = _count_table(table)
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return TestResult(FISHER, float("nan"), 1.0, {"tables": 1})
    if counts.shape == (2, 2):
        res = sps.fisher_exact(counts)
        return TestResult(FISHER, float(res.statistic), float(res.pvalue))
    # Enumerate along the longer side, so the recursion is over the short one.
    if counts.shape[0] > counts.shape[1]:
        counts = counts.T
    n_tables = count_tables(counts.sum(axis=1), counts.sum(axis=0), MAX_FISHER_TABLES + 1)
    if n_tables <= MAX_FISHER_TABLES:
        p_value, p_observed, n_tables = _fisher_rxc_enumerate(counts)
    if n_tables > MAX_FISHER_TABLES:
        method = sps.MonteCarloMethod(n_resamples=100_000, rng=np.random.default_rng(0))
        res = sps.fisher_exact(counts, method=method)
        return TestResult(f"{FISHER[:-1]}, Monte Carlo 100000 tables)",
                          float(res.statistic), float(res.pvalue))
    return TestResult(FISHER, p_observed, p_value, {"tables": n_tables})


def _count_table(table: ArrayLike) -> np.ndarray:
    values = np.asarray(table, dtype=float)
    if values.ndim != 2:
        raise StatsError(f"a count table must be 2-dimensional, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values % 1):
        raise StatsError("a count table holds non-negative whole numbers only")
    return values.astype(np.int64)


def _fisher_rxc_enumerate(counts: np.ndarray) -> tuple[float, float, int | None]:
    """Exact r×c Fisher P value by enumerating every table with the observed margins.

    Returns (P value, probability of the observed table, tables visited), or
    (nan, nan, None) when there are more than :data:`MAX_FISHER_TABLES` tables.

    Written here because scipy has no exact r×c Fisher test (see the module docstring).
    Each table's probability is ``Π r_i! Π c_j! / (n! Π x_ij!)``; the columns are filled
    one by one, each as a composition of its total bounded by the rows' remaining sums,
    and the last column is forced.
    """
    from scipy.special import gammaln

    rows = counts.sum(axis=1)
    cols = counts.sum(axis=0)
    n = int(rows.sum())
    log_const = gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(n + 1)
    lfact = gammaln(np.arange(n + 1) + 1.0)
    log_observed = log_const - lfact[counts].sum()
    threshold = log_observed + math.log1p(_FISHER_REL_TOL)
    r = len(rows)
    total = 0.0
    visited = 0

    def compositions(total_c: int, caps: np.ndarray, i: int):
        """All vectors x[i:] with sum total_c and 0 <= x_k <= caps[k]."""
        if i == r - 1:
            if total_c <= caps[i]:
                yield (total_c,)
            return
        rest_cap = int(caps[i + 1:].sum())
        for x in range(max(0, total_c - rest_cap), min(int(caps[i]), total_c) + 1):
            for tail in compositions(total_c - x, caps, i + 1):
                yield (x, *tail)

    def walk(j: int, remaining: np.ndarray, log_cells: float) -> None:
        nonlocal total, visited
        if j == len(cols) - 1:  # the last column is what the rows still need
            visited += 1
            if visited > MAX_FISHER_TABLES:
                raise _TooManyTables
            log_p = log_const - log_cells - lfact[remaining].sum()
            if log_p <= threshold:
                total += math.exp(log_p)
            return
        for column in compositions(int(cols[j]), remaining, 0):
            col = np.asarray(column)
            walk(j + 1, remaining - col, log_cells + lfact[col].sum())

    try:
        walk(0, rows.copy(), 0.0)
    except _TooManyTables:
        return float("nan"), float("nan"), None
    return min(total, 1.0), math.exp(log_observed), visited


class _TooManyTables(Exception):
    pass


def count_tables(rows: np.ndarray, cols: np.ndarray, stop: int) -> int:
    """How many count tables have these row and column sums (at most ``stop``).

    Columns are filled one by one; the number of ways to finish depends only on the rows'
    remaining sums, so it is memoised on them (the "network" of Fisher-test algorithms).
    """
    from functools import cache

    cols = [int(c) for c in cols]
    r = len(rows)

    def compositions(total: int, caps: tuple[int, ...], i: int):
        if i == r - 1:
            if total <= caps[i]:
                yield (total,)
            return
        rest = sum(caps[i + 1:])
        for x in range(max(0, total - rest), min(caps[i], total) + 1):
            for tail in compositions(total - x, caps, i + 1):
                yield (x, *tail)

    @cache
    def ways(j: int, remaining: tuple[int, ...]) -> int:
        if j == len(cols) - 1:
            return 1
        n = 0
        for column in compositions(cols[j], remaining, 0):
            n += ways(j + 1, tuple(a - b for a, b in zip(remaining, column, strict=True)))
            if n >= stop:
                return stop
        return n

    return ways(0, tuple(int(x) for x in rows))


# --- continuous variables ------------------------------------------------------------------

def _values(x: ArrayLike, name: str) -> np.ndarray:
    values = np.asarray(x, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise StatsError(f"{name}: no values (all missing)")
    return values


def compare_two_groups(a: ArrayLike, b: ArrayLike, exact: bool = False) -> TestResult:
    """Wilcoxon–Mann–Whitney test of two independent groups, two-sided.

    Parameters
    ----------
    a, b : array_like of float
        The two groups' values (any unit); missing values (NaN) are dropped.
    exact : bool
        False (default): the normal approximation with continuity correction and a
        tie-corrected variance, as SAS ``NPAR1WAY`` reports it. True: the exact
        permutation distribution; with ties, the two-sided P is SAS's
        Pr(|S − E S| ≥ |s − E S|) over the distribution of the mid-rank sum S.

    Returns
    -------
    TestResult
        Statistic: the Mann–Whitney U of ``a``; ``detail`` has ``n_a``, ``n_b`` and the
        medians.
    """
    from scipy import stats as sps

    xa, xb = _values(a, "first group"), _values(b, "second group")
    if exact:
        pooled = np.concatenate([xa, xb])
        if np.unique(pooled).size == pooled.size:
            res = sps.mannwhitneyu(xa, xb, alternative="two-sided", method="exact")
        else:
            u = float(sps.mannwhitneyu(xa, xb, method="asymptotic").statistic)
            return TestResult(WILCOXON_EXACT, u, _rank_sum_exact_p(xa, xb),
                              {"n_a": int(xa.size), "n_b": int(xb.size),
                               "median_a": float(np.median(xa)),
                               "median_b": float(np.median(xb))})
        test = WILCOXON_EXACT
    else:
        res = sps.mannwhitneyu(xa, xb, alternative="two-sided", method="asymptotic",
                               use_continuity=True)
        test = WILCOXON_NORMAL
    return TestResult(test, float(res.statistic), float(res.pvalue),
                      {"n_a": int(xa.size), "n_b": int(xb.size),
                       "median_a": float(np.median(xa)), "median_b": float(np.median(xb))})


def _rank_sum_exact_p(xa: np.ndarray, xb: np.ndarray) -> float:
    """Exact two-sided P of the Wilcoxon rank-sum test with ties, as SAS defines it.

    The permutation distribution of S, the sum of ``xa``'s mid-ranks, is built by dynamic
    programming over the pooled mid-ranks (doubled, so they are integers): the number of
    ways to pick k of the first i values with sum s. scipy's permutation test reports twice
    the smaller one-sided P instead, which differs from SAS when the distribution is not
    symmetric, so this is written here.
    """
    from scipy.stats import rankdata

    pooled = np.concatenate([xa, xb])
    ranks2 = np.rint(2 * rankdata(pooled)).astype(np.int64)
    m, n = xa.size, pooled.size
    total = int(ranks2.sum())
    # ways[k][s]: number of k-subsets with doubled rank sum s (floats: counts can be huge).
    ways = np.zeros((m + 1, total + 1))
    ways[0, 0] = 1.0
    for r in ranks2:
        ways[1:, r:] = ways[1:, r:] + ways[:-1, : total + 1 - r]
    dist = ways[m] / ways[m].sum()
    s_obs = int(ranks2[:m].sum())
    expected = m * (n + 1)  # doubled E S = 2 * m (n + 1) / 2
    deviation = np.abs(np.arange(total + 1) - expected)
    return float(min(1.0, dist[deviation >= abs(s_obs - expected) - 1e-9].sum()))


def compare_groups(*samples: ArrayLike) -> TestResult:
    """Kruskal–Wallis test of equal distributions across three (or more) groups.

    Parameters
    ----------
    *samples : array_like of float
        One array per group; NaN dropped. At least two groups.

    Returns
    -------
    TestResult
        Statistic: H (tie-corrected), referred to χ² with k−1 degrees of freedom, as SAS
        reports it.
    """
    from scipy import stats as sps

    if len(samples) < 2:
        raise StatsError("compare_groups needs at least two groups")
    groups = [_values(s, f"group {i + 1}") for i, s in enumerate(samples)]
    pooled = np.concatenate(groups)
    if np.unique(pooled).size == 1:
        return TestResult(KRUSKAL_WALLIS, 0.0, 1.0, {"dof": len(groups) - 1,
                                                     "note": "all values equal"})
    res = sps.kruskal(*groups)
    return TestResult(KRUSKAL_WALLIS, float(res.statistic), float(res.pvalue),
                      {"dof": len(groups) - 1, "n": [int(g.size) for g in groups]})


def logistic_association(values: ArrayLike, is_high_grade: ArrayLike,
                         log: bool = True) -> TestResult:
    """Logistic regression of a binary outcome on one marker, with the Wald P value.

    The study's model for T cells: P(TFR grade 2–3) against log(count), grade 1 (or lower)
    as the reference.

    Parameters
    ----------
    values : array_like of float
        The marker, e.g. CD8+ cells/µL; must be > 0 when ``log`` is True.
    is_high_grade : array_like of bool
        True for the outcome (e.g. TFR grade ≥ 2). Rows where either is missing are
        dropped.
    log : bool
        Regress on the natural logarithm of ``values`` (default, as the study did).

    Returns
    -------
    TestResult
        Statistic: the Wald χ² (z²) of the slope; ``detail`` has ``coef`` (log-odds per
        unit of log value), ``odds_ratio``, its ``ci95`` and ``n``.

    Raises
    ------
    StatsError
        Non-positive values under a log, a single outcome class, or separation (the
        outcome is perfectly predicted, so the slope is infinite).
    """
    import statsmodels.api as sm

    x = np.asarray(values, dtype=float).ravel()
    y_raw = np.asarray(is_high_grade, dtype=float).ravel()
    if x.size != y_raw.size:
        raise StatsError(f"{x.size} values but {y_raw.size} outcomes")
    keep = ~(np.isnan(x) | np.isnan(y_raw))
    x, y = x[keep], y_raw[keep]
    if not np.all((y == 0) | (y == 1)):
        raise StatsError("the outcome must be true/false (0/1)")
    if log:
        if np.any(x <= 0):
            raise StatsError("logistic_association on log values needs values > 0")
        x = np.log(x)
    if y.min() == y.max():
        raise StatsError("logistic regression needs both outcomes present")
    design = sm.add_constant(x, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = sm.Logit(y, design).fit(disp=False, maxiter=200)
        except Exception as exc:  # statsmodels' separation and singularity errors
            raise StatsError(f"logistic regression failed: {exc}") from None
    coef, se = float(fit.params[1]), float(fit.bse[1])
    if not np.isfinite(se) or se > 1e6 or not fit.mle_retvals.get("converged", True):
        raise StatsError("logistic regression did not converge (the outcome is "
                         "perfectly separated by the marker)")
    z = coef / se
    lo, hi = fit.conf_int()[1]
    return TestResult(LOGISTIC_WALD, z * z, float(fit.pvalues[1]),
                      {"coef": coef, "se": se, "odds_ratio": math.exp(coef),
                       "ci95": (math.exp(lo), math.exp(hi)), "n": int(y.size),
                       "log": log})


# --- censored times ------------------------------------------------------------------------

def _survival_arrays(times: ArrayLike, events: ArrayLike, name: str):
    t = np.asarray(times, dtype=float).ravel()
    e = np.asarray(events, dtype=float).ravel()
    if t.size != e.size:
        raise StatsError(f"{name}: {t.size} times but {e.size} event flags")
    keep = ~(np.isnan(t) | np.isnan(e))
    t, e = t[keep], e[keep]
    if t.size == 0:
        raise StatsError(f"{name}: no times (all missing)")
    if np.any(t < 0):
        raise StatsError(f"{name}: negative times")
    if not np.all((e == 0) | (e == 1)):
        raise StatsError(f"{name}: event flags must be 1 (event) or 0 (censored)")
    return t, e.astype(int)


def logrank(times_a: ArrayLike, events_a: ArrayLike, times_b: ArrayLike,
            events_b: ArrayLike) -> TestResult:
    """Log-rank test of two survival curves.

    Parameters
    ----------
    times_a, times_b : array_like of float
        Follow-up times (days or months, the same unit in both).
    events_a, events_b : array_like of {0, 1}
        1 = the event (onset, resolution, progression) was observed; 0 = censored.

    Returns
    -------
    TestResult
        Statistic: the log-rank χ² (1 degree of freedom), from statsmodels'
        ``survdiff``.
    """
    from statsmodels.duration.survfunc import survdiff

    ta, ea = _survival_arrays(times_a, events_a, "first group")
    tb, eb = _survival_arrays(times_b, events_b, "second group")
    time = np.concatenate([ta, tb])
    status = np.concatenate([ea, eb])
    group = np.concatenate([np.zeros(ta.size, int), np.ones(tb.size, int)])
    if status.sum() == 0:
        return TestResult(LOGRANK, 0.0, 1.0, {"note": "no events"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            chi2, p = survdiff(time, status, group)
    except (np.linalg.LinAlgError, ZeroDivisionError, ValueError) as exc:
        raise StatsError(f"log-rank test undefined for these times ({exc})") from None
    if not np.isfinite(chi2):
        raise StatsError("log-rank test undefined for these times (no variance)")
    return TestResult(LOGRANK, float(chi2), float(p),
                      {"n_a": int(ta.size), "n_b": int(tb.size),
                       "events_a": int(ea.sum()), "events_b": int(eb.sum())})


@dataclass(frozen=True)
class KaplanMeierMedian:
    """A Kaplan–Meier median with its 95 % confidence interval (same unit as the times).

    ``median`` is NaN when the curve never falls to 0.5; a CI bound is NaN when it is not
    reached (SAS prints ``.``).
    """

    median: float
    ci_low: float
    ci_high: float
    n: int
    events: int


def kaplan_meier_median(times: ArrayLike, events: ArrayLike,
                        ci_method: str = "linear") -> KaplanMeierMedian:
    """Kaplan–Meier median and its 95 % CI (Brookmeyer–Crowley).

    Parameters
    ----------
    times : array_like of float
        Follow-up times (days or months).
    events : array_like of {0, 1}
        1 = event observed, 0 = censored.
    ci_method : {"linear", "cloglog", "log", "logit", "asinsqrt"}
        Transform of the Brookmeyer–Crowley interval (statsmodels' names). "linear"
        (default) is the untransformed interval of SAS 9.1, the version the study used;
        SAS 9.2 and later default to log-log ("cloglog").

    Returns
    -------
    KaplanMeierMedian
        The median is the first event time at which the survival estimate falls below
        0.5; where the estimate equals 0.5 exactly from one event time to the next, it is
        the midpoint of the two — the definition of SAS ``LIFETEST`` (and R's
        ``survfit``). statsmodels (used for the curve and the CI) returns the later time
        in that case, so the median is taken from its curve here.
    """
    from statsmodels.duration.survfunc import SurvfuncRight

    t, e = _survival_arrays(times, events, "times")
    if e.sum() == 0:
        return KaplanMeierMedian(float("nan"), float("nan"), float("nan"), int(t.size), 0)
    sf = SurvfuncRight(t, e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = sf.quantile_ci(0.5, alpha=0.05, method=ci_method)
    return KaplanMeierMedian(_km_median(np.asarray(sf.surv_times, float),
                                        np.asarray(sf.surv_prob, float)),
                             _finite(lo), _finite(hi), int(t.size), int(e.sum()))


def _km_median(event_times: np.ndarray, survival: np.ndarray) -> float:
    """SAS's median of a Kaplan–Meier curve given at its event times (see above)."""
    exact = np.flatnonzero(np.abs(survival - 0.5) <= 1e-12)
    if exact.size:
        i = int(exact[0])
        return float((event_times[i] + event_times[i + 1]) / 2) if i + 1 < event_times.size \
            else float(event_times[i])
    below = np.flatnonzero(survival < 0.5)
    return float(event_times[below[0]]) if below.size else float("nan")


def _finite(x) -> float:
    x = float(x) if x is not None else float("nan")
    return x if np.isfinite(x) else float("nan")
