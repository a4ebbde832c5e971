"""Bad input in a batch: one errors.csv row each, every other sample complete, exit 1."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from immunoprofile import ManifestError, gate_batch, gate_sample
from immunoprofile.datasets.simulate import CHANNELS, PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube
from immunoprofile.errors import FCSReadError, GatingError, PanelError

BAD = PatientSpec("BAD", b_cells_per_ul=2_000, cd4_per_ul=800, cd8_per_ul=500, nk_per_ul=300)


@pytest.fixture()
def broken_batch(tmp_path, small_cohort):
    """The small cohort plus five broken entries, each listed in the manifest."""
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    (folder / "notes.fcs").write_text("Patient notes, not cytometry data\n" * 20)
    good = (folder / "P01_cd4.fcs").read_bytes()
    (folder / "truncated.fcs").write_bytes(good[: len(good) // 2])
    no_cd45 = simulate_tube(BAD, "cd8", events=5_000, seed=1)
    write_tube(no_cd45, folder / "no_cd45.fcs",
               channels=[c for c in CHANNELS if c != "PerCP-Cy5-5-A"])
    no_beads = simulate_tube(BAD, "nk", events=5_000, beads_per_test=0, seed=2)
    write_tube(no_beads, folder / "no_beads.fcs")
    with (folder / "manifest.csv").open("a") as manifest:
        manifest.write("notes.fcs,BAD1,nk,50000,50,\n")
        manifest.write("truncated.fcs,BAD2,cd4,50000,50,\n")
        manifest.write("no_cd45.fcs,BAD3,,50000,50,\n")
        manifest.write("no_beads.fcs,BAD4,nk,50000,50,\n")
        manifest.write("missing.fcs,BAD5,cd8,50000,50,\n")
    return folder


EXPECTED_REASONS = {
    "notes.fcs": "not an FCS file",
    "truncated.fcs": "truncated",
    "no_cd45.fcs": "no CD45 channel (markers found: CD3, CD8) — is this a CD3/CD8/CD45 tube?",
    "no_beads.fcs": "no counting beads found",
    "missing.fcs": "listed in manifest.csv but not found",
}


def test_batch_reports_each_bad_file_once(broken_batch):
    result = gate_batch(broken_batch)
    errors = dict(zip(result.errors["file"], result.errors["error"], strict=True))
    assert set(errors) == set(EXPECTED_REASONS)
    for file, reason in EXPECTED_REASONS.items():
        assert reason in errors[file], errors[file]
        assert "\n" not in errors[file]
        assert "Traceback" not in errors[file]
    # Every good tube is complete.
    assert sorted(result.samples["sample_id"]) == sorted(
        f"P0{p}_{t}" for p in (1, 2) for t in ("nk", "cd4", "cd8"))
    good = result.profiles.set_index("patient_id").loc[["P01", "P02"]]
    assert good[["nk_per_ul", "cd4_per_ul", "cd8_per_ul", "cd4_cd8_ratio"]].notna().all().all()


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_cli_exit_1_with_errors_csv_and_no_traceback(broken_batch, tmp_path):
    out = tmp_path / "results"
    proc = _run_cli("gate", broken_batch, "-o", out, "--jobs", "2")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(errors["file"]) == sorted(EXPECTED_REASONS)
    populations = pd.read_csv(out / "populations.csv")
    assert populations["sample_id"].nunique() == 6
    for name in ("profiles.csv", "samples.csv", "run.json"):
        assert (out / name).is_file()
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_cli_exit_0_when_all_succeed(small_cohort, tmp_path):
    proc = _run_cli("gate", small_cohort, "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "out" / "errors.csv").empty


@pytest.mark.parametrize("args, message", [
    (["gate", "{empty}", "-o", "{out}"], "no manifest.csv in"),
    (["gate", "{missing}", "-o", "{out}"], "does not exist"),
    (["gate", "{cohort}", "-o", "{out}", "--jobs", "0"], "--jobs"),
    (["gate", "{cohort}", "-o", "{out}", "--manifest", "{bad_manifest}"], "missing column"),
])
def test_cli_usage_errors_exit_2(tmp_path, small_cohort, args, message):
    (tmp_path / "empty").mkdir()
    bad_manifest = tmp_path / "bad.csv"
    bad_manifest.write_text("filename,who\nx.fcs,P\n")
    names = {"empty": tmp_path / "empty", "missing": tmp_path / "nowhere",
             "out": tmp_path / "out", "cohort": small_cohort, "bad_manifest": bad_manifest}
    proc = _run_cli(*[a.format(**names) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_files_not_in_manifest_are_reported(small_cohort, tmp_path):
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    shutil.copy(folder / "P01_nk.fcs", folder / "stray.fcs")
    result = gate_batch(folder)
    assert list(result.errors["file"]) == ["stray.fcs"]
    assert "not listed in manifest.csv" in result.errors["error"][0]
    assert len(result.samples) == 6


def test_manifest_bad_values_are_row_errors(small_cohort, tmp_path):
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    text = (folder / "manifest.csv").read_text().splitlines()
    text[1] = text[1].replace(",nk,", ",xyz,")
    text[2] = text[2].replace(",50000,", ",lots,")
    (folder / "manifest.csv").write_text("\n".join(text) + "\n")
    result = gate_batch(folder)
    reasons = " | ".join(result.errors["error"])
    assert "unknown tube 'xyz'" in reasons
    assert "beads_per_test must be a number" in reasons
    assert len(result.samples) == 4


def test_manifest_without_required_columns():
    with pytest.raises(ManifestError):
        gate_batch(".", manifest=__file__)


def test_gate_sample_errors_are_immunoprofile_errors(broken_batch):
    with pytest.raises(FCSReadError, match="notes.fcs: not an FCS file"):
        gate_sample(broken_batch / "notes.fcs")
    with pytest.raises(FCSReadError, match="truncated"):
        gate_sample(broken_batch / "truncated.fcs")
    with pytest.raises(PanelError, match="no CD45 channel"):
        gate_sample(broken_batch / "no_cd45.fcs")
    with pytest.raises(GatingError, match="no counting beads"):
        gate_sample(broken_batch / "no_beads.fcs")


def test_tube_without_beads_counts_dual_platform(broken_batch):
    table = gate_sample(broken_batch / "no_beads.fcs", beads_per_test=None, alc=BAD.alc)
    nk = table.set_index("population").loc["NK"]
    assert pd.isna(nk["cells_per_ul"])
    assert nk["cells_per_ul_dual"] == pytest.approx(BAD.nk_per_ul, rel=0.25)


def test_unwritable_output_is_usage_error(small_cohort, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _run_cli("gate", small_cohort, "-o", blocker / "out")
    assert proc.returncode == 2
    assert "cannot write results" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tot_disagreeing_with_data_is_refused(small_cohort, tmp_path):
    data = bytearray((small_cohort / "P01_nk.fcs").read_bytes())
    text_end = int(data[18:26])
    text = data[:text_end + 1].decode("latin-1")
    damaged = text.replace("/$TOT/10000/", "/$TOT/12000/")
    assert damaged != text
    (tmp_path / "tot.fcs").write_bytes(damaged.encode("latin-1") + data[text_end + 1:])
    with pytest.raises(FCSReadError, match=r"decodes to 10000 events but \$TOT says 12000"):
        gate_sample(tmp_path / "tot.fcs")


def test_manifest_trailing_comma_and_blank_lines(small_cohort, tmp_path):
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    lines = (folder / "manifest.csv").read_text().splitlines()
    (folder / "manifest.csv").write_text("\n".join([lines[0], lines[1] + ",", ""] + lines[2:])
                                         + "\n")
    result = gate_batch(folder)
    assert result.ok, result.errors
    assert len(result.samples) == 6


@pytest.mark.parametrize("value", ["inf", "-5", "0", "nan?"])
def test_manifest_rejects_non_finite_or_negative(small_cohort, tmp_path, value):
    folder = tmp_path / "batch"
    shutil.copytree(small_cohort, folder)
    lines = (folder / "manifest.csv").read_text().splitlines()
    parts = lines[1].split(",")
    parts[3] = value
    lines[1] = ",".join(parts)
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    result = gate_batch(folder)
    assert list(result.errors["file"]) == [parts[0]]
    assert "beads_per_test must be" in result.errors["error"][0]


def test_gate_sample_without_beads_or_alc_is_refused_as_the_manifest_does(small_cohort):
    """The API and the CLI agree: no beads and no ALC is no absolute count — an error,
    not a table of empty counts."""
    with pytest.raises(ManifestError, match="neither beads_per_test nor alc is given"):
        gate_sample(small_cohort / "P01_nk.fcs", beads_per_test=None)


def test_batch_result_shows_a_short_summary(broken_batch):
    result = gate_batch(broken_batch)
    text = repr(result)
    assert text.startswith("<BatchResult: 6 of") and "7 patients" in text, text
    assert "5 failed" in text and "notes.fcs" in text and len(text) < 250, text
