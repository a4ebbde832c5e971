"""A SIMULATED 45-patient reference cohort, reconstructed from the study's published numbers.

Chanan-Khan et al. (*Cancer* 2011;117:2127-35) publish aggregates, not patients. The rows
below are one set of patients consistent with those aggregates: every count, median and
range listed in :data:`PUBLISHED` holds exactly, and ``tests/study/test_reference_cohort.py``
checks each one. **No row is a real patient**; any other set meeting the same constraints
would be as faithful to the paper. Where the paper gives no number (which ZAP-70-negative
patient is female, the response of a patient without an immune profile…), the value is an
arbitrary but fixed choice.

How the values were chosen: ``tools/search_reference_cohort.py`` (a seeded search, run once
by hand) found values that meet the medians and ranges and, where the paper prints a P value
for them, a value that rounds to it; the result was pasted here (three NK values were then
nudged by hand, as that script records). The paper's P values that
are *not* reproduced by these rows are listed in :data:`NOT_HONOURED`.

Layout (row order): Group A (25 mg, no prophylaxis) R01-R29, then Group B (10 mg with
escalation and prednisone) R30-R45; within each group no TFR, then grades 1, 2, 3.
"""

from __future__ import annotations

import pandas as pd

#: Printed wherever these data appear (tables, figures, model card).
SIMULATED_NOTE = ("Reference cohort: 45 SIMULATED patients reconstructed from the published "
                  "aggregates of Chanan-Khan et al., Cancer 2011; not real patient data.")

#: Every published number the rows honour, with where it is printed. Keys name the
#: quantity; values are exact targets (counts, medians, (min, max) ranges). Units: years,
#: ×10⁹/L (ALC), cells/mm³ = cells/µL (immune), days (TFR times), months (PFS).
PUBLISHED = {
    # Table 2: group sizes and TFR grades per group
    "patients": {"A": 29, "B": 16},
    "tfr_grade_counts": {"A": {0: 10, 1: 10, 2: 7, 3: 2}, "B": {0: 5, 1: 10, 2: 0, 3: 1}},
    # Table 2 and Results ("median age of 64 years"; "61 years vs 71 years")
    "age_median_range": {"all": (64, 42, 75), "A": (63, 47, 74), "B": (65, 42, 75)},
    "age_median_by_tfr": {"tfr": 61, "no_tfr": 71},
    # Table 2: sex, Rai stage and ZAP-70 counts per group
    "sex_counts": {"A": {"M": 22, "F": 7}, "B": {"M": 14, "F": 2}},
    "rai_counts": {"A": {"0-II": 10, "III-IV": 19}, "B": {"0-II": 6, "III-IV": 10}},
    # Results, Risk Factors: "73% with Rai stage III-IV disease vs 47%" (22 of 30, 7 of 15)
    "rai_iii_iv_by_tfr": {"tfr": 22, "no_tfr": 7},
    "zap70_counts": {"A": {"positive": 15, "negative": 8, "NA": 6},
                     "B": {"positive": 8, "negative": 5, "NA": 3}},
    # Table 2: median baseline ALC (range), ×10⁹/L
    "alc_median_range": {"all": (43.6, 0.7, 339.0), "A": (45.9, 0.7, 339.0),
                         "B": (35.1, 3.5, 327.0)},
    # Results, NK Cells and T Cells: the 18-patient immune subset, grade 1 (n = 12) and
    # grades 2-3 (n = 6): median (min, max), cells/mm³
    "immune_subset_sizes": {"grade_1": 12, "grade_2_3": 6},
    "nk_median_range": {"grade_1": (264, 36, 1355), "grade_2_3": (579, 164, 2439)},
    "cd4_median_range": {"grade_1": (729, 11, 2073), "grade_2_3": (598, 182, 5689)},
    "cd8_median_range": {"grade_1": (575, 141, 2080), "grade_2_3": (873, 494, 4021)},
    # Results, NK Cells: responders (CR+PR) vs the rest in the subset; 5 CRs in the subset
    "nk_median_range_by_response": {"responders": (448, 100, 2439),
                                    "non_responders": (303, 36, 609)},
    "subset_cr": 5,
    "subset_sd": 2,
    # Results, Correlation Between TFR and Response: CR per TFR grade; Table 2: CR and ORR
    "cr_by_tfr_grade": {0: (1, 15), 1: (4, 20), 2: (2, 7), 3: (1, 3)},
    "cr_counts": {"A": 5, "B": 3},
    "orr_counts": {"A": 14, "B": 10},
    # Table 2: median time to onset (range), days
    "onset_median_range": {"all": (6, 0, 56), "A": (4, 0, 38), "B": (9, 2, 56)},
    # Table 2: median TFR duration, days (Kaplan-Meier; every TFR resolved). Group B is
    # 28 in Table 2 but 26 in the text; the table's value is used.
    "duration_km_median": {"all": 14, "A": 13, "B": 28},
    # Results, Impact of Steroid Prophylaxis: median PFS, months (Kaplan-Meier)
    "pfs_km_median": {"A": 23.0, "B": 17.8, "tfr": 19.9, "no_tfr": 19.4},
}

#: P values the paper prints for data these rows stand in for, and which the rows
#: reproduce (rounded as printed) with the test the study names.
PUBLISHED_P_VALUES = {
    "age, TFR vs no TFR (Wilcoxon)": ".004",
    "age, A vs B (Wilcoxon)": ".79",
    "ALC, A vs B (Wilcoxon)": ".57",
    "NK, grade 1 vs 2-3 (Wilcoxon)": ".05",
    "CD4, grade 2-3 vs 1 (logistic, log count)": ".34",
    "CD8, grade 2-3 vs 1 (logistic, log count)": ".15",
    "CD4/CD8 ratio, grades 1/2/3 (Kruskal-Wallis)": ".01",
    "NK, response vs none (logistic, log count)": ".24",
    "time to onset, A vs B (log-rank)": ".01",
    "TFR duration, A vs B (log-rank)": ".16",
    "PFS, A vs B (log-rank)": ".74",
    "PFS, TFR vs no TFR (log-rank)": ".92",
}

#: Published numbers these rows do NOT reproduce, and why.
NOT_HONOURED = {
    "CD4, grades 1/2/3 (Kruskal-Wallis) P = .9": "the rows give a smaller P; searches that "
    "also targeted it did not meet the other immune targets",
    "CD8, grades 1/2/3 P = .05": "test not named in the paper; the rows give about .08 by "
    "Kruskal-Wallis",
    "TFR duration 95% CIs (10-26, 10-25, 14-97)": "only the medians were targeted",
    "prior treatments, LDH, allopurinol, bulky disease": "not columns of the cohort table",
}

COLUMNS = ["patient_id", "regimen", "age", "sex", "rai_stage", "alc", "zap70", "tfr_grade",
           "tfr_onset_days", "tfr_duration_days", "response", "pfs_months", "pfs_event",
           "nk_per_ul", "cd4_per_ul", "cd8_per_ul"]

# Columns as COLUMNS. age: years; alc: ×10⁹/L; zap70 None = not available; onset and
# duration: days (TFR patients only; every TFR resolved); pfs_event 1 = progressed;
# nk/cd4/cd8: cells/µL, only for the 18-patient immune subset. Responses: CR by grade and
# group as PUBLISHED; the subset's non-responders with the two highest NK counts are the
# two SD; every other non-responder is PD (the paper does not say).
_ROWS = [
    ('R01', 'A', 74, 'M', 3, 62.6, 'positive', 0, None, None, 'PR', 8.0, 1, None, None, None),  # no TFR
    ('R02', 'A', 50, 'M', 1, 8.3, 'negative', 0, None, None, 'PD', 6.5, 0, None, None, None),  # no TFR
    ('R03', 'A', 61, 'F', 4, 2.2, 'positive', 0, None, None, 'PD', 8.9, 1, None, None, None),  # no TFR
    ('R04', 'A', 47, 'M', 2, 135.3, None, 0, None, None, 'CR', 6.9, 1, None, None, None),  # no TFR
    ('R05', 'A', 72, 'M', 0, 103.5, 'positive', 0, None, None, 'PD', 43.1, 0, None, None, None),  # no TFR
    ('R06', 'A', 69, 'M', 3, 2.2, 'negative', 0, None, None, 'PR', 29.8, 0, None, None, None),  # no TFR
    ('R07', 'A', 64, 'M', 2, 60.8, 'positive', 0, None, None, 'PD', 55.9, 1, None, None, None),  # no TFR
    ('R08', 'A', 71, 'F', 4, 45.9, None, 0, None, None, 'PD', 27.1, 1, None, None, None),  # no TFR
    ('R09', 'A', 68, 'M', 1, 1.0, 'positive', 0, None, None, 'PR', 8.6, 1, None, None, None),  # no TFR
    ('R10', 'A', 72, 'M', 3, 70.9, 'negative', 0, None, None, 'PD', 56.6, 1, None, None, None),  # no TFR
    ('R11', 'A', 47, 'M', 4, 152.2, 'positive', 1, 9, 83, 'CR', 8.9, 1, 100, 1797, 2080),  # TFR grade 1, immune subset
    ('R12', 'A', 67, 'M', 3, 2.9, 'negative', 1, 0, 11, 'PR', 2.8, 0, 273, 168, 368),  # TFR grade 1, immune subset
    ('R13', 'A', 66, 'F', 1, 246.9, 'positive', 1, 2, 13, 'PD', 18.1, 0, 406, 82, 516),  # TFR grade 1, immune subset
    ('R14', 'A', 48, 'M', 4, 43.6, None, 1, 0, 14, 'PD', 46.2, 1, 303, 277, 1026),  # TFR grade 1, immune subset
    ('R15', 'A', 62, 'M', 3, 7.7, 'positive', 1, 33, 10, 'PR', 23.5, 1, 104, 2073, 340),  # TFR grade 1, immune subset
    ('R16', 'A', 66, 'M', 2, 12.7, 'negative', 1, 6, 40, 'PD', 19.6, 1, 243, 1299, 1832),  # TFR grade 1, immune subset
    ('R17', 'A', 63, 'M', 4, 339.0, 'positive', 1, 23, 76, 'SD', 28.1, 0, 609, 25, 141),  # TFR grade 1, immune subset
    ('R18', 'A', 53, 'F', 3, 18.9, None, 1, 32, 30, 'PR', 17.4, 1, None, None, None),  # TFR grade 1
    ('R19', 'A', 63, 'M', 4, 5.0, 'positive', 1, 34, 72, 'PD', 23.0, 1, None, None, None),  # TFR grade 1
    ('R20', 'A', 63, 'M', 0, 0.9, 'negative', 1, 4, 3, 'PR', 2.2, 1, None, None, None),  # TFR grade 1
    ('R21', 'A', 60, 'M', 3, 252.2, 'positive', 2, 9, 81, 'PD', 19.7, 1, 164, 488, 494),  # TFR grade 2, immune subset
    ('R22', 'A', 50, 'M', 4, 95.8, None, 2, 2, 55, 'CR', 18.2, 1, 579, 5689, 645),  # TFR grade 2, immune subset
    ('R23', 'A', 73, 'F', 3, 49.0, 'positive', 2, 2, 4, 'CR', 11.4, 1, 988, 708, 669),  # TFR grade 2, immune subset
    ('R24', 'A', 53, 'M', 2, 60.5, 'negative', 2, 7, 3, 'PD', 36.5, 1, 578, 1870, 1077),  # TFR grade 2, immune subset
    ('R25', 'A', 47, 'M', 4, 0.7, 'positive', 2, 2, 11, 'PR', 49.9, 1, None, None, None),  # TFR grade 2
    ('R26', 'A', 73, 'F', 3, 233.6, None, 2, 0, 3, 'PD', 60.0, 0, None, None, None),  # TFR grade 2
    ('R27', 'A', 70, 'M', 1, 39.3, 'positive', 2, 4, 13, 'PR', 30.3, 1, None, None, None),  # TFR grade 2
    ('R28', 'A', 65, 'M', 4, 60.5, 'negative', 3, 38, 57, 'CR', 7.8, 0, 2439, 199, 4021),  # TFR grade 3, immune subset
    ('R29', 'A', 56, 'F', 3, 1.8, 'positive', 3, 0, 13, 'PD', 12.5, 1, None, None, None),  # TFR grade 3
    ('R30', 'B', 71, 'M', 1, 21.2, 'positive', 0, None, None, 'PR', 11.7, 1, None, None, None),  # no TFR
    ('R31', 'B', 74, 'M', 3, 77.8, 'negative', 0, None, None, 'PD', 9.6, 1, None, None, None),  # no TFR
    ('R32', 'B', 74, 'F', 0, 33.6, 'positive', 0, None, None, 'PR', 58.1, 1, None, None, None),  # no TFR
    ('R33', 'B', 71, 'M', 4, 119.4, None, 0, None, None, 'PD', 44.5, 0, None, None, None),  # no TFR
    ('R34', 'B', 73, 'M', 2, 70.9, 'positive', 0, None, None, 'PD', 9.0, 1, None, None, None),  # no TFR
    ('R35', 'B', 42, 'M', 4, 327.0, 'positive', 1, 42, 8, 'PD', 34.1, 0, 79, 85, 225),  # TFR grade 1, immune subset
    ('R36', 'B', 52, 'M', 3, 94.4, 'negative', 1, 3, 7, 'PD', 56.4, 1, 36, 11, 187),  # TFR grade 1, immune subset
    ('R37', 'B', 54, 'M', 1, 32.8, 'positive', 1, 2, 14, 'CR', 9.1, 1, 448, 1181, 1335),  # TFR grade 1, immune subset
    ('R38', 'B', 54, 'M', 4, 36.6, None, 1, 6, 43, 'PR', 3.2, 0, 1355, 1189, 1589),  # TFR grade 1, immune subset
    ('R39', 'B', 68, 'M', 3, 3.5, 'positive', 1, 38, 85, 'PR', 58.7, 0, 255, 1825, 634),  # TFR grade 1, immune subset
    ('R40', 'B', 54, 'M', 4, 158.1, 'negative', 1, 49, 28, 'CR', 13.2, 1, None, None, None),  # TFR grade 1
    ('R41', 'B', 65, 'F', 2, 6.0, 'positive', 1, 56, 13, 'PR', 2.3, 1, None, None, None),  # TFR grade 1
    ('R42', 'B', 46, 'M', 3, 19.2, None, 1, 9, 3, 'CR', 17.8, 1, None, None, None),  # TFR grade 1
    ('R43', 'B', 42, 'M', 4, 30.0, 'positive', 1, 4, 98, 'PR', 19.9, 1, None, None, None),  # TFR grade 1
    ('R44', 'B', 65, 'M', 0, 4.2, 'negative', 1, 6, 69, 'PR', 51.7, 1, None, None, None),  # TFR grade 1
    ('R45', 'B', 75, 'M', 3, 140.1, 'negative', 3, 48, 84, 'SD', 7.2, 1, 579, 182, 3551),  # TFR grade 3, immune subset
]


def reference_cohort() -> pd.DataFrame:
    """The SIMULATED 45-patient reference cohort (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` plus ``cd4_cd8_ratio`` (CD4/CD8, immune subset only), typed
        as :func:`immunoprofile.study.cohort.read_cohort` types a cohort CSV.
        ``attrs["simulated"]`` carries :data:`SIMULATED_NOTE`, which reports and figures
        print.
    """
    from .cohort import validate_cohort

    table = pd.DataFrame(_ROWS, columns=COLUMNS)
    table["cd4_cd8_ratio"] = table["cd4_per_ul"] / table["cd8_per_ul"]
    cohort = validate_cohort(table.astype(object).where(table.notna(), ""),
                             source="reference cohort")
    cohort.attrs["simulated"] = SIMULATED_NOTE
    return cohort
