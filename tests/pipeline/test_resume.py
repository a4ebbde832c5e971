"""A batch killed with SIGKILL and started again resumes and ends with the tables of an
uninterrupted run; a second run on the same output folder is refused while one is live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"
TABLES = ("populations.csv", "profiles.csv", "samples.csv", "errors.csv")


def gate(out: Path, *extra: str, **popen) -> subprocess.Popen:
    # FlowKit gates a tube in a fraction of a second: slow enough to stop a run part-way.
    command = [sys.executable, "-m", "immunoprofile.cli", "gate", str(SAMPLE_DATA), "-o",
               str(out), "-q", "--engine", "flowkit", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_tables(tmp_path):
    reference = tmp_path / "reference"
    done = gate(reference)
    assert done.wait(timeout=600) == 0, done.stderr.read()

    out = tmp_path / "interrupted"
    kept_dir = out / ".work" / "resume"
    run = gate(out)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if kept_dir.exists() and len(list(kept_dir.glob("*.npz"))) >= 3:
            break
        time.sleep(0.01)
    assert run.poll() is None, "the run finished before it could be stopped"
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    kept = len(list(kept_dir.glob("*.npz")))
    assert 3 <= kept < 18
    assert not (out / "profiles.csv").exists()  # nothing half-written
    assert (out / ".immunoprofile.lock").exists()  # the dead run's lock

    again = gate(out)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["samples"]["resumed"] >= kept
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert not kept_dir.exists() and not (out / ".immunoprofile.lock").exists()


def test_second_run_on_a_live_folder_is_refused(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    # A live process holds the folder (this test's own process stands in for it).
    (out / ".immunoprofile.lock").write_text(f"{os.getpid()}\n{os.uname().nodename}\n0\n")
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate",
                             str(SAMPLE_DATA), "-o", str(out), "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "another immunoprofile run" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "profiles.csv").exists()


def test_a_kept_tube_is_reused_only_while_its_file_is_unchanged(tmp_path):
    """Kept tubes are matched by file size, modification time and the first 64 KiB: an
    untouched file is reused, a rewritten one (new content, new time) is gated again."""
    import shutil

    from immunoprofile import gate_batch

    samples = tmp_path / "samples"
    shutil.copytree(SAMPLE_DATA, samples)
    resume = tmp_path / "resume"
    first = gate_batch(samples, resume_dir=resume)
    again = gate_batch(samples, resume_dir=resume)
    assert again.run["samples"]["resumed"] == 18
    assert again.tables["populations"].to_csv() == first.tables["populations"].to_csv()
    # another patient's NK tube written over P01's: same size, other content and time
    (samples / "P01_nk.fcs").write_bytes((samples / "P02_nk.fcs").read_bytes())
    changed = gate_batch(samples, resume_dir=resume)
    assert changed.run["samples"]["resumed"] == 17
    ours = changed.populations.set_index(["sample_id", "population"])["events"]
    p02 = first.populations.set_index(["sample_id", "population"])["events"]
    assert ours.loc["P01_nk"].tolist() == p02.loc["P02_nk"].tolist()
    # a file restored with its old time but other bytes at its start is caught too
    stat = (samples / "P03_nk.fcs").stat()
    data = bytearray((samples / "P03_nk.fcs").read_bytes())
    data[200:210] = b"x" * 10  # inside TEXT
    (samples / "P03_nk.fcs").write_bytes(bytes(data))
    os.utime(samples / "P03_nk.fcs", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = gate_batch(samples, resume_dir=resume)
    assert again.run["samples"]["resumed"] == 17
