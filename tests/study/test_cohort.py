"""Cohort CSVs: typing, clear errors naming the row, the join with profiles.csv, and the
cohort-stats command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from immunoprofile.study.cohort import (
    CohortError,
    join_profiles,
    read_cohort,
    read_profiles,
)
from immunoprofile.study.reference_cohort import reference_cohort

HEADER = ("patient_id,regimen,age,sex,rai_stage,alc,tfr_grade,tfr_onset_days,"
          "tfr_duration_days,response,pfs_months,pfs_event")


def write(tmp_path, *rows, header=HEADER):
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_types_and_missing_values(tmp_path):
    path = write(tmp_path, "P1,A,61,M,III,43.6,2,4,13,CR,23,1",
                 "P2,b,70,female,1,,0,,,PD,12.5,0",
                 "P3,,,,,,,,,,,")
    c = read_cohort(path)
    assert c.patient_id.tolist() == ["P1", "P2", "P3"]
    assert c.regimen.tolist()[:2] == ["A", "B"] and pd.isna(c.regimen[2])
    assert c.sex.tolist()[:2] == ["M", "F"]
    assert c.rai_stage[0] == 3  # Roman numerals accepted
    assert str(c.tfr_grade.dtype) == "Int64" and c.tfr_grade.isna().tolist() == [False,
                                                                                  False, True]
    assert np.isnan(c.alc[1]) and c.pfs_event.tolist()[:2] == [1.0, 0.0]


@pytest.mark.parametrize("row, message", [
    ("P1,A,61,M,3,43.6,5,4,13,CR,23,1", r"line 2 \(patient P1\): tfr_grade '5' is not a TFR "
                                        r"grade \(0-4\)"),
    ("P1,A,61,M,3,43.6,1.5,4,13,CR,23,1", "line 2 .*tfr_grade '1.5' is not a whole number"),
    ("P1,A,sixty,M,3,43.6,1,4,13,CR,23,1", "line 2 .*age 'sixty' is not a number"),
    ("P1,C,61,M,3,43.6,1,4,13,CR,23,1", "line 2 .*regimen 'C' is not one of A/B"),
    ("P1,A,61,M,3,43.6,1,4,13,MR,23,1", "response 'MR' is not one of CR/PR/SD/PD"),
    ("P1,A,61,M,3,43.6,1,4,13,CR,23,2", "pfs_event '2' is not an event flag"),
    ("P1,A,61,M,3,-4,1,4,13,CR,23,1", "alc '-4' is not within"),
    ("P1,A,61,M,V,43.6,1,4,13,CR,23,1", "rai_stage 'V' is not a number"),
])
def test_bad_values_name_the_row(tmp_path, row, message):
    path = write(tmp_path, "P0,A,60,M,1,10,0,,,PD,10,1", row.replace("P1", "P1", 1))
    with pytest.raises(CohortError, match=message.replace("line 2", "line 3")):
        read_cohort(path)


def test_structural_errors(tmp_path):
    with pytest.raises(CohortError, match="appears twice"):
        read_cohort(write(tmp_path, "P1,A,61,M,3,1,1,1,1,CR,1,1", "P1,A,61,M,3,1,1,1,1,CR,1,1"))
    with pytest.raises(CohortError, match="no patient_id column"):
        read_cohort(write(tmp_path, "A,61", header="regimen,age"))
    with pytest.raises(CohortError, match="patient_id is blank"):
        read_cohort(write(tmp_path, ",A,61,M,3,1,1,1,1,CR,1,1"))
    with pytest.raises(CohortError, match="no such cohort file"):
        read_cohort(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(CohortError, match="not a readable CSV"):
        read_cohort(binary)


def test_join_profiles():
    cohort = reference_cohort().drop(columns=["nk_per_ul", "cd4_per_ul", "cd8_per_ul",
                                              "cd4_cd8_ratio"])
    profiles = pd.DataFrame({"patient_id": ["R11", "X99"], "nk_per_ul": [100.0, 5.0],
                             "cd4_per_ul": [1.0, 2.0], "cd8_per_ul": [2.0, 1.0],
                             "cd4_cd8_ratio": [0.5, 2.0], "qc_flags": ["", "NO_SPILLOVER"]})
    joined = join_profiles(cohort, profiles)
    assert len(joined) == 45
    assert joined.set_index("patient_id").loc["R11", "nk_per_ul"] == 100.0
    assert joined.nk_per_ul.notna().sum() == 1
    assert joined.attrs["profiles_without_cohort_row"] == ["X99"]
    with pytest.raises(CohortError, match="already has nk_per_ul"):
        join_profiles(reference_cohort(), profiles)
    with pytest.raises(CohortError, match="lacks cd8_per_ul"):
        join_profiles(cohort, profiles.drop(columns="cd8_per_ul"))


def test_read_profiles_errors(tmp_path):
    with pytest.raises(CohortError, match="run immunoprofile gate first"):
        read_profiles(tmp_path)
    (tmp_path / "profiles.csv").write_text("patient_id,foo\nP1,2\n")
    with pytest.raises(CohortError, match="lacks nk_per_ul"):
        read_profiles(tmp_path)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cohort_stats_command(tmp_path):
    path = tmp_path / "reference.csv"
    reference_cohort().to_csv(path, index=False)
    out = tmp_path / "stats"
    result = run_cli("cohort-stats", path, "-o", out)
    assert result.returncode == 0, result.stderr
    for name in ("table2.csv", "tfr_risk_factors.csv", "immune_by_tfr_grade.csv",
                 "cr_by_tfr_grade.csv", "figure2_immune_by_tfr_grade.png",
                 "figure3_cr_by_tfr_grade.png", "cohort_stats.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figure2_immune_by_tfr_grade.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table2 = pd.read_csv(out / "table2.csv", dtype=str, keep_default_na=False)
    assert {"p", "test"} <= set(table2.columns)
    assert (table2.p != "").sum() >= 10
    assert (table2.test[table2.p != ""] != "").all()  # every P value names its test

    # The built-in reference cohort gives the same tables, labelled simulated.
    ref = tmp_path / "ref"
    assert run_cli("cohort-stats", "-", "--reference", "-o", ref).returncode == 0
    assert (ref / "table2.csv").read_text() == (out / "table2.csv").read_text()
    assert "SIMULATED" in (ref / "cohort_stats.md").read_text()


def test_cohort_stats_without_optional_columns(tmp_path):
    """A cohort with no immune data and no regimen still gets what it can, and says why not."""
    path = write(tmp_path, *[f"P{i},,{50 + i},M,{i % 5},10,{i % 3},,,PD,10,1"
                             for i in range(12)])
    out = tmp_path / "stats"
    result = run_cli("cohort-stats", path, "-o", out)
    assert result.returncode == 0, result.stderr
    text = (out / "cohort_stats.md").read_text()
    assert "Table 2 — regimen groups A and B: not computed" in text
    assert (out / "tfr_risk_factors.csv").exists()
    assert not (out / "figure2_immune_by_tfr_grade.png").exists()


def test_cohort_stats_bad_cohort_is_one_line(tmp_path):
    result = run_cli("cohort-stats", write(tmp_path, "P1,A,61,M,3,43.6,7,4,13,CR,23,1"),
                     "-o", tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'cohort.csv'} line 2 (patient P1): tfr_grade '7' is not a TFR "
        "grade (0-4)"]


@pytest.mark.parametrize("text, message", [
    ("patient_id,tfr_grade\nP1,1,x\n", "line 2: 3 fields but the header has 2"),
    ("patient_id,tfr_grade,tfr_grade\nP1,1,2\n", "column tfr_grade appears twice"),
    ("", "empty file"),
])
def test_cohort_csv_shape_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    with pytest.raises(CohortError, match=message):
        read_cohort(path)
    result = run_cli("cohort-stats", path, "-o", tmp_path / "out")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["inf", "-5", "-inf"])
def test_profiles_with_impossible_counts_are_refused(tmp_path, value):
    path = tmp_path / "profiles.csv"
    path.write_text("patient_id,nk_per_ul,cd4_per_ul,cd8_per_ul,cd4_cd8_ratio\n"
                    f"P1,{value},500,250,2\nP2,,500,250,2\n")
    with pytest.raises(CohortError, match="nk_per_ul of patient P1 .* not a finite count"):
        read_profiles(path)
    result = run_cli("predict", path, "-o", tmp_path / "p.csv")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_cohort_without_comparable_groups_gets_na_not_one(tmp_path):
    """All patients without a TFR: nothing to compare, so P is NA with the reason."""
    path = write(tmp_path, *[f"P{i},{'AB'[i % 2]},{50 + i},M,1,10,0,,,,10,1"
                             for i in range(8)])
    out = tmp_path / "stats"
    result = run_cli("cohort-stats", path, "-o", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "table2.csv", dtype=str, keep_default_na=False)
    row = table[table.characteristic == "TFR, no. (%)"].iloc[0]
    assert row.p == "NA" and "nothing to compare" in row.test
    text = (out / "cohort_stats.md").read_text()
    assert "CR rate by TFR grade (Figure 3): not computed" in text
