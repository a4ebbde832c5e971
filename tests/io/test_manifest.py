"""Manifest columns: a column the manifest does not define is refused, never ignored.

The batches are simulated (``small_cohort``); each test renames or adds a header cell.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from immunoprofile import ManifestError, gate_batch
from immunoprofile.io.manifest import read_manifest


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def _batch(tmp_path, small_cohort, header_edit, row_edit=None):
    """A copy of the small cohort whose manifest header (and rows) are edited."""
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    lines = (folder / "manifest.csv").read_text().splitlines()
    lines[0] = header_edit(lines[0])
    if row_edit is not None:
        lines[1:] = [row_edit(line) for line in lines[1:]]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("wrong, right", [("volume", "volume_ul"),
                                          ("beads_per_tube", "beads_per_test"),
                                          ("ALC_10e9", "alc")])
def test_misspelt_column_is_a_usage_error(tmp_path, small_cohort, wrong, right):
    # `volume` left every tube at the default 50 µL; `beads_per_tube` every count empty.
    folder = _batch(tmp_path, small_cohort, lambda h: h.replace(right, wrong))
    out = tmp_path / "out"
    proc = _run_cli("gate", folder, "-o", out, "-q")
    assert proc.returncode == 2, proc.stderr
    assert f"unknown column {wrong.lower()!r} (did you mean {right!r}?)" in proc.stderr
    assert str(folder / "manifest.csv") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "profiles.csv").exists()


def test_tables_step_refuses_an_unknown_column(tmp_path, small_cohort):
    """`immunoprofile tables` (the workflow's profiles step) reads the manifest too."""
    folder = _batch(tmp_path, small_cohort, lambda h: h.replace("volume_ul", "volume"))
    proc = _run_cli("tables", folder, tmp_path / "tubes", "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "unknown column 'volume' (did you mean 'volume_ul'?)" in proc.stderr


def test_every_unknown_column_is_named(tmp_path, small_cohort):
    folder = _batch(tmp_path, small_cohort, lambda h: h + ",comment,lot",
                    lambda r: r + ",fine,L123")
    with pytest.raises(ManifestError) as error:
        read_manifest(folder / "manifest.csv")
    message = str(error.value)
    assert "unknown columns 'comment', 'lot'" in message
    assert "start a column's name with 'x_'" in message


def test_x_columns_pass_through_and_names_ignore_case_and_spaces(tmp_path, small_cohort):
    folder = _batch(tmp_path, small_cohort,
                    lambda h: " File , Patient_ID,TUBE,beads_per_test,Volume_uL ,alc,"
                              "x_lab_number,X_Comment",
                    lambda r: r + ",L-0042,\"haemolysed, re-drawn\"")
    manifest = read_manifest(folder / "manifest.csv", folder)
    assert not manifest.problems
    assert len(manifest.requests) == 6
    assert {r.volume_ul for r in manifest.requests} == {50.0}  # read, not the default
    assert gate_batch(folder).ok


def test_unnamed_column_holding_values_is_refused(tmp_path, small_cohort):
    folder = _batch(tmp_path, small_cohort, lambda h: h + ",", lambda r: r + ",2.5")
    with pytest.raises(ManifestError, match=r"column 7 has no name but holds values "
                                            r"\(line 2\)"):
        read_manifest(folder / "manifest.csv")


def test_empty_unnamed_column_is_allowed(tmp_path, small_cohort):
    # A spreadsheet's trailing comma on every line: an empty column without a name.
    folder = _batch(tmp_path, small_cohort, lambda h: h + ",", lambda r: r + ",")
    manifest = read_manifest(folder / "manifest.csv", folder)
    assert not manifest.problems and len(manifest.requests) == 6
