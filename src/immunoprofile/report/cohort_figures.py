"""Cohort figures in the style of the study: markers by TFR grade (Figure 2), CR by grade
(Figure 3). Each returns PNG bytes, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..study import statistics as stats
from ..study.cohort_stats import MARKERS

GRADE_GROUPS = (("Grade 1", lambda g: g == 1), ("Grade 2-3", lambda g: g >= 2))


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def immune_by_grade_figure(cohort: pd.DataFrame, simulated_note: str | None = None) -> bytes:
    """Dot plots of each immune marker per patient by TFR grade group, medians as bars.

    Parameters
    ----------
    cohort : pandas.DataFrame
        With ``tfr_grade`` and any of ``nk_per_ul``, ``cd4_per_ul``, ``cd8_per_ul``
        (cells/µL, log axis) and ``cd4_cd8_ratio``.
    simulated_note : str, optional
        Printed under the figure (default: the cohort's ``attrs["simulated"]``).

    Returns
    -------
    bytes
        A PNG image.

    Raises
    ------
    stats.StatsError
        No TFR grades, or no marker values in patients with a TFR.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if "tfr_grade" not in cohort.columns:
        raise stats.StatsError("the cohort has no tfr_grade column")
    grade = cohort["tfr_grade"].astype(float)
    markers = [m for m in MARKERS if m in cohort.columns
               and (pd.to_numeric(cohort[m], errors="coerce").notna() & (grade >= 1)).any()]
    if not markers:
        raise stats.StatsError("no immune marker values in patients with a TFR")
    fig, axes = plt.subplots(1, len(markers), figsize=(3.2 * len(markers), 3.8), squeeze=False)
    rng = np.random.default_rng(0)  # horizontal jitter only, for legibility
    for ax, column in zip(axes[0], markers, strict=True):
        label, unit = MARKERS[column]
        v = pd.to_numeric(cohort[column], errors="coerce")
        for x, (_name, select) in enumerate(GRADE_GROUPS):
            chosen = select(grade) & v.notna()
            values = v[chosen].to_numpy(float)
            if values.size:
                jitter = x + rng.uniform(-0.12, 0.12, values.size)
                is_grade_3 = (grade[chosen] >= 3).to_numpy()
                for marker, sel in (("o", ~is_grade_3), ("^", is_grade_3)):
                    ax.scatter(jitter[sel], values[sel], s=24, marker=marker,
                               color=("#4477aa", "#cc3311")[x], alpha=0.85,
                               edgecolor="white", linewidth=0.5, zorder=3)
                median = float(np.median(values))
                ax.hlines(median, x - 0.25, x + 0.25, color="black", linewidth=2, zorder=4)
        ax.set_xticks([0, 1], [f"{n}\n(n={int((s(grade) & v.notna()).sum())})"
                               for n, s in GRADE_GROUPS])
        ax.set_xlim(-0.6, 1.6)
        if (v[v.notna()] > 0).all():
            ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(unit or "ratio")
        ax.grid(axis="y", alpha=0.3)
    note = simulated_note if simulated_note is not None else cohort.attrs.get("simulated")
    fig.suptitle("Baseline immune cells by TFR grade (bars: medians; triangles: grade 3)",
                 fontsize=11)
    if note:
        fig.text(0.5, -0.04, "SIMULATED DATA — " + str(note), ha="center", fontsize=7,
                 color="#aa0000", wrap=True)
    fig.tight_layout()
    return _png(fig)


def cr_by_grade_figure(cohort: pd.DataFrame, simulated_note: str | None = None) -> bytes:
    """Bar chart of the complete-response rate by TFR grade, with counts on the bars.

    Returns
    -------
    bytes
        A PNG image.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..study.cohort_stats import cr_by_tfr_grade

    table = cr_by_tfr_grade(cohort)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    x = np.arange(len(table))
    ax.bar(x, 100 * table["cr_rate"], color="#4477aa", zorder=3)
    for xi, row in zip(x, table.itertuples(), strict=True):
        ax.text(xi, 100 * row.cr_rate + 1, f"{row.cr}/{row.patients}", ha="center",
                fontsize=9)
    ax.set_xticks(x, [f"Grade {g}" if g else "No TFR" for g in table["tfr_grade"]])
    ax.set_ylabel("Complete response, %")
    ax.set_ylim(0, max(40.0, float(100 * table["cr_rate"].max()) + 10))
    ax.grid(axis="y", alpha=0.3)
    p, test = table["p"].iloc[-1], table["test"].iloc[-1]
    ax.set_title(f"CR by TFR grade (P = {p}, {test})", fontsize=9)
    note = simulated_note if simulated_note is not None else cohort.attrs.get("simulated")
    if note:
        fig.text(0.5, -0.02, "SIMULATED DATA", ha="center", fontsize=7, color="#aa0000")
    fig.tight_layout()
    return _png(fig)
