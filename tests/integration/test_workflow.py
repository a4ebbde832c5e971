"""The Snakemake workflow: lint-clean, config validated, same tables as `immunoprofile gate`,
a failed tube reported while the other patients' results are produced, precise re-runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from immunoprofile.pipeline.tube_result import tube_result_key

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"
TABLES = ("populations.csv", "profiles.csv", "samples.csv", "errors.csv", "gates.csv")

pytest.importorskip("snakemake", reason="the workflow tests need Snakemake (the test extra)")


def snakemake(*args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def gate_cli(samples: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate", str(samples),
                           "-o", str(out), "-q"], capture_output=True, text=True, timeout=600)


def _assert_tables_of_gate(out: Path, templates: Path, reference: Path) -> None:
    """The workflow's tables in ``out`` are byte for byte those of `immunoprofile gate` on
    sample_data with the same templates (written to ``reference``)."""
    gated = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate",
                            str(SAMPLE_DATA), "-o", str(reference), "-q", "--templates",
                            str(templates)], capture_output=True, text=True, timeout=600)
    assert gated.returncode == 0, gated.stderr
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_lint_and_dry_run_clean(tmp_path):
    lint = snakemake("--lint", cwd=REPO)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr
    dry = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", f"output={tmp_path / 'out'}",
                    cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "gate_tube" in dry.stdout and "report" in dry.stdout


@pytest.mark.parametrize("override, key", [("threads=many", "threads"),
                                           ("engine=fast", "engine"),
                                           ("sampels=x", "sampels")])
def test_bad_config_fails_at_start_naming_the_key(tmp_path, override, key):
    result = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", override, cwd=tmp_path)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert key in text and "validat" in text.lower()


def test_unknown_manifest_column_and_broken_template_fail_at_start(tmp_path):
    """Read once when the workflow starts: one message, no job run."""
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLE_DATA, samples)
    manifest = samples / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("volume_ul", "volume", 1))
    result = snakemake("-n", "--config", f"samples={samples}", cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown column 'volume' (did you mean 'volume_ul'?)" in result.stdout + \
        result.stderr
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "gating", templates)
    cd8 = templates / "cd8_tube.xml"
    cd8.write_text(cd8.read_text().replace('gating:id="CD8pos"', 'gating:id="CD8"'))
    result = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", f"templates={templates}",
                       cwd=tmp_path)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"{cd8}: no gate CD8pos" in text
    assert "gate_tube" not in result.stdout


@pytest.mark.slow
def test_workflow_matches_gate_and_reruns_precisely(tmp_path):
    out = tmp_path / "results"
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "gating", templates)
    run = snakemake("--cores", "2", "--config", f"samples={SAMPLE_DATA}", f"output={out}",
                    f"templates={templates}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_tables_of_gate(out, templates, tmp_path / "gate")
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 6 and predictions.p_tfr_grade_2_or_more.notna().all()
    assert (out / "report.html").stat().st_size > 100_000
    for log in ("profiles.log", "predict.log", "report.log"):
        assert (out / "logs" / log).exists()

    # Nothing to do on a second run.
    again = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", f"output={out}",
                      f"templates={templates}", cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr

    # A changed CD4 template re-gates only the six CD4 tubes (and what follows). Snakemake
    # compares contents, so the change must be real: a comment is enough.
    with open(templates / "cd4_tube.xml", "a") as template:
        template.write("<!-- edited -->\n")
    plan = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", f"output={out}",
                     f"templates={templates}", cwd=tmp_path)
    jobs = _job_counts(plan.stdout)
    assert jobs.get("gate_tube") == 6, plan.stdout
    assert jobs.get("profiles") == 1 and jobs.get("report") == 1

    # An interrupted run (a lost tube result) resumes with just that tube.
    resume = snakemake("--cores", "2", "--config", f"samples={SAMPLE_DATA}",
                       f"output={out}", f"templates={templates}", cwd=tmp_path)
    assert resume.returncode == 0
    # As if stopped while one tube was being gated: nothing after gating was written.
    lost_tube = f".work/tubes/{tube_result_key('P02_nk')}.npz"
    for lost in (lost_tube, *TABLES, "run.json", "predictions.csv", "report.html",
                 ".work/batch_ok"):
        (out / lost).unlink()
    plan = snakemake("-n", "--config", f"samples={SAMPLE_DATA}", f"output={out}",
                     f"templates={templates}", cwd=tmp_path)
    jobs = _job_counts(plan.stdout)
    assert jobs.get("gate_tube") == 1 and jobs.get("profiles") == 1, plan.stdout
    assert jobs.get("report") == 1


def _job_counts(dry_run_output: str) -> dict[str, int]:
    """Job counts per rule from Snakemake's dry-run "Job stats" table."""
    counts = {}
    in_table = False
    for line in dry_run_output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and counts and not parts:
            break
    return counts


@pytest.mark.slow
def test_failed_tube_is_reported_and_others_complete(tmp_path):
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLE_DATA, samples, ignore=shutil.ignore_patterns("*.json", "*.npz"))
    data = (samples / "P01_nk.fcs").read_bytes()
    (samples / "P07_nk.fcs").write_bytes(data[: len(data) // 3])  # truncated: corrupt
    with open(samples / "manifest.csv", "a") as manifest:
        manifest.write("P07_nk.fcs,P07,nk,50000,50,5.0\n")
    out = tmp_path / "results"
    run = snakemake("--cores", "2", "--config", f"samples={samples}", f"output={out}",
                    cwd=tmp_path)
    assert run.returncode == 1  # the run says something failed…
    # …on one last line naming the file and errors.csv, with no traceback.
    assert "CalledProcessError" not in run.stderr and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "P07_nk.fcs" in last and str(out / "errors.csv") in last, run.stderr[-3000:]
    assert "Error in rule" not in run.stderr, run.stderr[-3000:]
    errors = pd.read_csv(out / "errors.csv")
    assert errors.file.tolist() == ["P07_nk.fcs"]
    assert "P07_nk.fcs" in errors.error[0]
    assert "P07_nk.fcs" in (out / "logs" / "batch_ok.log").read_text()
    # A rerun redoes only the last step, and says it again.
    config = ["--config", f"samples={samples}", f"output={out}"]
    plan = snakemake("-n", *config, cwd=tmp_path)
    assert set(_job_counts(plan.stdout)) - {"all", "total"} == {"batch_ok"}, plan.stdout
    again = snakemake("--cores", "1", *config, cwd=tmp_path)
    assert again.returncode == 1 and "P07_nk.fcs" in again.stderr.strip().splitlines()[-1]
    # …and every other patient's results are there, as `immunoprofile gate` makes them.
    profiles = pd.read_csv(out / "profiles.csv")
    complete = profiles[profiles.patient_id != "P07"]
    assert len(complete) == 6 and complete.nk_per_ul.notna().all()
    reference = tmp_path / "gate"
    assert gate_cli(samples, reference).returncode == 1
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    report = (out / "report.html").read_text()
    assert "P07_nk.fcs" in report and "Failures" in report


@pytest.mark.slow
def test_workflow_with_awkward_names_a_cohort_and_a_manifest_edit(tmp_path):
    """Spaces in paths, numeric ids, a subfolder, an absolute path in the manifest, a
    cohort CSV with its own immune columns; then a manifest edit re-counts but re-gates
    nothing."""
    from immunoprofile.study.reference_cohort import reference_cohort

    samples = tmp_path / "tubes with spaces"
    (samples / "sub dir").mkdir(parents=True)
    rows = ["file,patient_id,tube,beads_per_test,volume_ul,alc"]
    source = pd.read_csv(SAMPLE_DATA / "manifest.csv")
    for i, row in enumerate(source[source.patient_id.isin(["P01", "P02"])].itertuples()):
        name = ["001.fcs", "sub dir/P01 cd4.fcs", None, "002.fcs", "003.fcs", "004.fcs"][i]
        target = samples / (name or "abs.fcs")
        shutil.copy(SAMPLE_DATA / row.file, target)
        file = str(target) if name is None else name  # one absolute path
        patient = "NA" if row.patient_id == "P02" else row.patient_id  # "NA" stays a name
        rows.append(f'"{file}",{patient},{row.tube},{row.beads_per_test},{row.volume_ul},'
                    f"{row.alc}")
    (samples / "manifest.csv").write_text("\n".join(rows) + "\n")
    cohort = tmp_path / "my cohort.csv"
    reference_cohort().to_csv(cohort, index=False)
    out = tmp_path / "my results"
    config = ["--config", f"samples={samples}", f"output={out}", f"cohort={cohort}"]
    run = snakemake("--cores", "2", *config, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    reference = tmp_path / "gate"
    assert gate_cli(samples, reference).returncode == 0
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert pd.read_csv(out / "profiles.csv", keep_default_na=False).patient_id.tolist() == \
        ["P01", "NA"]
    report = (out / "report.html").read_text()
    assert report.count("<details>") == 6  # gating plots for every tube, numeric ids too
    assert "Cohort figures" in report and "Patient NA" in report
    assert (out / "cohort_stats" / "table2.csv").exists()

    # A changed ALC in the manifest re-counts; no tube is gated again.
    text = (samples / "manifest.csv").read_text().replace(",2.43\n", ",2.5\n", 1)
    (samples / "manifest.csv").write_text(text)
    plan = snakemake("-n", *config, cwd=tmp_path)
    jobs = _job_counts(plan.stdout)
    assert "gate_tube" not in jobs and jobs.get("profiles") == 1, plan.stdout


def test_tube_result_files_are_safe_and_checked(tmp_path):
    from immunoprofile.io.manifest import TubeRequest
    from immunoprofile.pipeline.tube import TubeFailure
    from immunoprofile.pipeline.tube_result import load_tube_result

    keys = {tube_result_key(s) for s in ("a b", "a_b", "../../etc/x", "P{1}", "001")}
    assert len(keys) == 5
    assert all(re_ok(k) for k in keys)
    request = TubeRequest(path=tmp_path / "x.fcs", sample_id="x", patient_id="P",
                          tube=None, beads_per_test=1.0, volume_ul=1.0, alc=1.0)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    result = load_tube_result(broken, request)
    assert isinstance(result, TubeFailure) and "unreadable" in result.error


def test_tube_results_of_another_format_are_refused(tmp_path):
    """A result file of the unreleased first format (per-event bitmasks) is not read: it
    becomes the tube's failure, saying to delete it and run again."""
    import json

    import numpy as np

    from immunoprofile.io.manifest import TubeRequest
    from immunoprofile.pipeline.tube import TubeFailure
    from immunoprofile.pipeline.tube_result import load_tube_result

    request = TubeRequest(path=tmp_path / "x.fcs", sample_id="x", patient_id="P",
                          tube=None, beads_per_test=1.0, volume_ul=1.0, alc=1.0)
    meta = {"format": "immunoprofile-tube-result/1", "sample_id": "x", "tube": "nk",
            "gate_ids": ["A", "B"], "parents": [None, "A"], "events": 4,
            "has_spillover": True, "simulated": True, "seconds": 0.1, "keywords": None,
            "provenance": None}
    old = tmp_path / "old.npz"
    np.savez(old, meta=np.array(json.dumps(meta)),
             bitmask=np.array([1, 3, 0, 3], dtype=np.uint32))
    result = load_tube_result(old, request)
    assert isinstance(result, TubeFailure)
    assert "wrong format tag" in result.error and "run the workflow again" in result.error


def re_ok(key: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9_-]+", key) is not None


def test_check_errors_command(tmp_path):
    good = tmp_path / "errors.csv"
    good.write_text("file,error\n")
    run = [sys.executable, "-m", "immunoprofile.cli", "check-errors"]
    assert subprocess.run([*run, str(good)], capture_output=True).returncode == 0
    good.write_text("file,error\nP07_nk.fcs,listed in manifest.csv but not found\n")
    result = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "error: P07_nk.fcs: listed in manifest.csv but not found" in result.stderr
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    result = subprocess.run([*run, str(other)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_tubes_per_job_gates_chunks_of_one_panel_with_the_same_tables(tmp_path):
    """tubes_per_job=4: each job gates up to four tubes of one panel in one process; the
    tables are those of `immunoprofile gate`, a changed CD4 template re-runs only the CD4
    jobs, and a lost tube only its own chunk."""
    out = tmp_path / "results"
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "gating" / "adaptive", templates)
    config = ["--config", f"samples={SAMPLE_DATA}", f"output={out}",
              f"templates={templates}", "tubes_per_job=4"]
    run = snakemake("--cores", "2", *config, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_tables_of_gate(out, templates, tmp_path / "gate")
    # 6 tubes per panel, 4 per job: chunks of 4 and 2, each with its own log
    assert sorted(p.name for p in (out / "logs" / "gate_tubes").glob("*.log")) == \
        sorted(f"{panel}_{k}.log" for panel in ("nk", "cd4", "cd8") for k in (1, 2))
    with open(templates / "cd4_tube.xml", "a") as template:
        template.write("<!-- edited -->\n")
    jobs = _job_counts(snakemake("-n", *config, cwd=tmp_path).stdout)
    assert {rule for rule in jobs if rule.startswith("gate_")} == \
        {"gate_tubes_cd4_1", "gate_tubes_cd4_2"}, jobs
    assert snakemake("--cores", "2", *config, cwd=tmp_path).returncode == 0
    # as if stopped while that job gated P05_nk: nothing after gating was written
    for lost in (f".work/tubes/{tube_result_key('P05_nk')}.npz", *TABLES, "run.json",
                 "predictions.csv", "report.html", ".work/batch_ok"):
        (out / lost).unlink()
    jobs = _job_counts(snakemake("-n", *config, cwd=tmp_path).stdout)
    assert {rule for rule in jobs if rule.startswith("gate_")} == {"gate_tubes_nk_2"}, jobs


def test_gate_tubes_command_records_a_bad_tube_and_writes_the_others(tmp_path):
    bad = tmp_path / "bad.fcs"
    bad.write_bytes(b"not an FCS file" * 20)
    good = SAMPLE_DATA / "P01_cd4.fcs"
    result = subprocess.run(
        [sys.executable, "-m", "immunoprofile.cli", "gate-tubes",
         "--item", str(good), "P01_cd4", "cd4", str(tmp_path / "a.npz"),
         "--item", str(bad), "BAD", "-", str(tmp_path / "b.npz")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "P01_cd4: cd4 tube, 25000 events gated" in result.stderr
    assert "bad.fcs" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "a.npz").is_file() and (tmp_path / "b.npz").is_file()
    wrong = subprocess.run(
        [sys.executable, "-m", "immunoprofile.cli", "gate-tubes",
         "--item", str(good), "P01_cd4", "cd5", str(tmp_path / "c.npz")],
        capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "unknown tube 'cd5'" in wrong.stderr
