"""What a user reads on the terminal: one line naming the file, the same exit status in every
command (2: a bad call, or an input that is missing or cannot be used as a whole; 1: some
samples failed), click's usage text only for mistakes in the call itself, and no output
folder left behind by a run refused at the start. Simulated tubes throughout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Usage:" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# Each command given an input that does not exist: exit 2, one line naming it.
MISSING = [
    ("gate", ["{nowhere}", "-o", "{out}"]),
    ("gate", ["{empty}", "-o", "{out}"]),  # a folder without manifest.csv
    ("gate", ["{cohort}", "-o", "{out}", "--manifest", "{nowhere}/manifest.csv"]),
    ("gate-tube", ["{nowhere}/P01_nk.fcs", "--sample-id", "P01_nk", "-o", "{out}/x.npz"]),
    ("report", ["{nowhere}"]),
    ("report", ["{empty}"]),  # a folder that is not gate's output
    ("predict", ["{nowhere}", "-o", "{out}/p.csv"]),
    ("predict", ["{cohort}", "--model", "{nowhere}/m.json", "-o", "{out}/p.csv"]),
    ("train", ["{nowhere}/cohort.csv", "-o", "{out}/m.json"]),
    ("cohort-stats", ["{nowhere}/cohort.csv", "-o", "{out}"]),
    ("plot", ["{nowhere}/P01_nk.fcs", "-o", "{out}"]),
    ("inspect", ["{nowhere}/P01_nk.fcs"]),
    ("simulate", ["{blocker}/cohort"]),  # an output that cannot be written
]


@pytest.mark.parametrize("command, args", MISSING,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(MISSING)])
def test_missing_input_is_exit_2_with_one_line_and_no_usage(tmp_path, small_cohort, command,
                                                            args):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blocker").write_text("a file, not a folder")
    names = {"nowhere": tmp_path / "nowhere", "out": tmp_path / "out",
             "empty": tmp_path / "empty", "cohort": small_cohort,
             "blocker": tmp_path / "blocker"}
    result = run_cli(command, *[a.format(**names) for a in args])
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = _one_error_line(result)
    given = [a.format(**names) for a in args if "{nowhere}" in a or "{empty}" in a
             or "{blocker}" in a]
    assert any(g in line or Path(g).name in line for g in given), line
    assert not (tmp_path / "out").exists(), "a refused run left its output folder behind"


def test_gate_refused_leaves_no_output_folder_and_no_usage_text(tmp_path):
    (tmp_path / "tubes").mkdir()
    out = tmp_path / "new" / "results"
    result = run_cli("gate", tmp_path / "tubes", "-o", out)
    assert result.returncode == 2
    assert _one_error_line(result).startswith("error: no manifest.csv in")
    assert not (tmp_path / "new").exists()


def test_a_mistake_in_the_call_still_shows_the_usage(tmp_path, small_cohort):
    result = run_cli("gate", small_cohort, "-o", tmp_path / "out", "--jobs", "0")
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "--jobs" in result.stderr
    assert not (tmp_path / "out").exists()


def test_console_errors_name_the_file_and_the_manifest(tmp_path, small_cohort):
    """A row listed twice: errors.csv says `listed twice in manifest.csv (line N)`; the
    terminal names the tube, the manifest by its path, and errors.csv."""
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, lines[1]]) + "\n")
    tube = lines[1].split(",")[0]
    out = tmp_path / "out"
    result = run_cli("gate", folder, "-o", out, "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tube}: listed twice in {manifest} (line {len(lines) + 1})"]
    last = result.stderr.strip().splitlines()[-1]
    assert tube in last and str(out / "errors.csv") in last


def test_a_failed_sample_is_exit_1_in_every_command(tmp_path):
    bad = tmp_path / "notes.fcs"
    bad.write_text("Patient notes, not cytometry data\n" * 20)
    for args in (["gate-tube", bad, "--sample-id", "notes", "-o", tmp_path / "t" / "x.npz"],
                 ["plot", bad, "-o", tmp_path / "plots"],
                 ["inspect", bad]):
        result = run_cli(*args)
        assert result.returncode == 1, (args[0], result.stderr)
        assert "notes.fcs" in _one_error_line(result)
    assert (tmp_path / "t" / "x.npz").is_file()  # gate-tube records the failure it reports
    assert not (tmp_path / "plots").exists()
