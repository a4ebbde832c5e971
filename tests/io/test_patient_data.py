"""FCS TEXT keywords often identify patients: no output carries them unless asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from immunoprofile.datasets.cohort import cohort_specs, stained_volume_ul
from immunoprofile.datasets.simulate import simulate_tube
from immunoprofile.datasets.tube_files import write_tube

#: Identifiers seeded into every file's TEXT, as clinical cytometers write them.
IDENTIFIERS = {
    "$SRC": "DOE^JANE^Q",
    "$SMNO": "MRN-99812734",
    "PATIENT ID": "PID-5512-XK",
    "$OP": "OperatorHildegard",
    "$INST": "St Elsewhere Haem Lab 4",
    "COMMENT": "born 1950-03-17 ward 7b",
    "$CELLS": "Jane-Q-Doe-PBMC",
}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "immunoprofile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def identified_batch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("phi")
    rows = ["file,patient_id,tube,beads_per_test,volume_ul,alc"]
    for patient in cohort_specs()[:2]:
        volume = stained_volume_ul(patient, 50_000.0)
        for i, tube in enumerate(("nk", "cd4", "cd8")):
            sim = simulate_tube(patient, tube, events=5_000, volume_ul=volume, seed=i)
            name = f"{patient.patient_id}_{tube}.fcs"
            write_tube(sim, folder / name, extra_keywords=IDENTIFIERS)
            rows.append(f"{name},{patient.patient_id},{tube},50000,{volume:g},")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def _leaks(folder: Path) -> list[tuple[str, str]]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1").lower()
            found += [(path.name, value) for value in IDENTIFIERS.values()
                      if value.lower() in text]
    return found


def test_seeded_identifiers_are_in_the_files(identified_batch):
    text = (identified_batch / "P01_nk.fcs").read_bytes().decode("latin-1")
    assert all(value in text for value in IDENTIFIERS.values())


@pytest.mark.slow
def test_no_output_carries_identifiers(identified_batch, tmp_path):
    out = tmp_path / "results"
    assert run_cli("gate", identified_batch, "-o", out, "-q").returncode == 0
    assert run_cli("predict", out, "-o", out / "predictions.csv").returncode == 0
    assert run_cli("report", out).returncode == 0
    assert run_cli("plot", identified_batch / "P01_cd4.fcs", "-o", out / "plots") \
        .returncode == 0
    inspect = run_cli("inspect", identified_batch / "P01_nk.fcs")
    assert inspect.returncode == 0
    (out / "inspect.txt").write_text(inspect.stdout + inspect.stderr)
    assert (out / "report.html").exists() and len(list(out.rglob("*"))) >= 8
    assert _leaks(out) == []


def test_keep_keywords_copies_them_on_request(identified_batch, tmp_path):
    out = tmp_path / "results"
    assert run_cli("gate", identified_batch, "-o", out, "-q", "--keep-keywords") \
        .returncode == 0
    samples = pd.read_csv(out / "samples.csv")
    assert "fcs_keywords" in samples.columns
    assert "MRN-99812734" in samples.fcs_keywords[0]
    assert {name for name, _ in _leaks(out)} == {"samples.csv"}
