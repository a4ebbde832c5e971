"""The study's tables and figures of a cohort, written into one folder (``immunoprofile
cohort-stats``): the tables of :mod:`immunoprofile.study.cohort_stats` as CSV and Markdown,
the figures of :mod:`.cohort_figures` as PNG. What the cohort cannot support is left out
with its reason, and no file of an earlier run survives that this one did not write.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io.atomic import atomic_write_bytes, atomic_write_csv, atomic_write_text
from ..study import statistics as stats
from ..study.cohort_stats import cr_by_tfr_grade, immune_by_tfr_grade, table2, tfr_risk_factors
from .cohort_figures import cr_by_grade_figure, immune_by_grade_figure


def write_cohort_stats(cohort: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write every table and figure the cohort supports into ``out_dir``, atomically.

    Files: ``table2.csv``, ``tfr_risk_factors.csv``, ``immune_by_tfr_grade.csv``,
    ``cr_by_tfr_grade.csv``, ``figure2_immune_by_tfr_grade.png``,
    ``figure3_cr_by_tfr_grade.png`` and ``cohort_stats.md`` (all tables, readable, with a
    note of what could not be computed and why).

    Parameters
    ----------
    cohort : pandas.DataFrame
        Validated cohort (immune columns joined where available).
    out_dir : str or Path
        Created if needed.

    Returns
    -------
    dict
        Name → path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    notes: list[str] = []
    sections: list[tuple[str, pd.DataFrame]] = []
    for name, title, build in (
            ("table2", "Table 2 — regimen groups A and B", table2),
            ("tfr_risk_factors", "Risk factors — patients with and without a TFR",
             tfr_risk_factors),
            ("immune_by_tfr_grade", "Immune markers by TFR grade (Figure 2)",
             immune_by_tfr_grade),
            ("cr_by_tfr_grade", "CR rate by TFR grade (Figure 3)", cr_by_tfr_grade)):
        try:
            table = build(cohort)
        except stats.StatsError as exc:
            notes.append(f"{title}: not computed — {exc}")
            continue
        path = out / f"{name}.csv"
        atomic_write_csv(path, table)
        written[name] = path
        sections.append((title, table))
    for name, figure in (("figure2_immune_by_tfr_grade", immune_by_grade_figure),
                         ("figure3_cr_by_tfr_grade", cr_by_grade_figure)):
        try:
            png = figure(cohort)
        except stats.StatsError as exc:
            notes.append(f"{name}: not drawn — {exc}")
            continue
        path = out / f"{name}.png"
        atomic_write_bytes(path, png)
        written[name] = path
    text = ["# Cohort statistics", ""]
    if cohort.attrs.get("simulated"):
        text += [f"> **Simulated data.** {cohort.attrs['simulated']}", ""]
    text += [f"{len(cohort)} patients. Each P value is followed by the test that produced "
             "it (χ² when every expected count is ≥ 5, otherwise Fisher's exact test).", ""]
    for title, table in sections:
        text += [f"## {title}", "", _markdown(table), ""]
    if notes:
        text += ["## Not computed", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "cohort_stats.md"
    atomic_write_text(path, "\n".join(text))
    written["cohort_stats"] = path
    # A table or figure this cohort could not make must not survive from an earlier run.
    for name in OUTPUT_NAMES:
        stale = out / name
        if stale not in written.values():
            stale.unlink(missing_ok=True)
    return written


#: Every file write_cohort_stats may write.
OUTPUT_NAMES = ("table2.csv", "tfr_risk_factors.csv", "immune_by_tfr_grade.csv",
                "cr_by_tfr_grade.csv", "figure2_immune_by_tfr_grade.png",
                "figure3_cr_by_tfr_grade.png", "cohort_stats.md")


def _markdown(table: pd.DataFrame) -> str:
    """A pipe table (no extra dependency: pandas' to_markdown needs tabulate)."""
    cells = table.astype(object).where(table.notna(), "").astype(str)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join([header, rule, *body])
