"""The workflow through a real SLURM: a one-node cluster started for the test (munge,
slurmctld, slurmd; no accounting database), the shipped profile `profiles/slurm`, and
tables byte-identical to a local `snakemake --cores 2` run. Skipped, with the reason,
where the cluster cannot be started (see tests/support/slurm_cluster.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.slurm_cluster import one_node_slurm, why_not

pytest.importorskip("snakemake", reason="the workflow tests need Snakemake (the test extra)")
pytest.importorskip("snakemake_executor_plugin_slurm",
                    reason="the cluster test needs the SLURM executor plugin (the test extra)")

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO / "sample_data"
TABLES = ("populations.csv", "profiles.csv", "samples.csv", "errors.csv", "gates.csv",
          "predictions.csv")
#: Seconds before the plugin's first status query (the profile's 15 s, shortened here).
POLL = "2"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    with one_node_slurm(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def _samples(folder: Path, patient: str = "P01") -> Path:
    """One patient's three tubes of sample_data/ and their manifest rows."""
    folder.mkdir()
    lines = (SAMPLE_DATA / "manifest.csv").read_text().splitlines()
    rows = [line for line in lines[1:] if line.startswith(f"{patient}_")]
    assert len(rows) == 3
    for row in rows:
        shutil.copy(SAMPLE_DATA / row.split(",")[0], folder)
    (folder / "manifest.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    return folder


def _snakemake(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    # a hang (the plugin waiting for jobs it cannot see finish) fails the test, not CI
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=420)


def test_workflow_through_slurm_equals_a_local_run(cluster, tmp_path):
    samples = _samples(tmp_path / "samples")
    env = dict(cluster, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                             cluster.get("PATH", "")]))
    config = ["--config", f"samples={samples}"]
    run = _snakemake("--profile", str(REPO / "profiles" / "slurm"),
                     "--slurm-init-seconds-before-status-checks", POLL, *config,
                     f"output={tmp_path / 'cluster'}", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # the three tubes were gated by one cluster job (group "gate"), and profiles and
    # report ran as cluster jobs of their own (the plugin deletes the logs of jobs that
    # succeeded; its submission lines name them)
    submitted = [line for line in (run.stdout + run.stderr).splitlines()
                 if "has been submitted with SLURM jobid" in line]
    assert [s.split("slurm_logs/")[1].split("/")[0] for s in submitted] == \
        ["group_gate_gate_tube", "rule_profiles", "rule_report"], run.stderr[-3000:]

    local = _snakemake("--cores", "2", *config, f"output={tmp_path / 'local'}",
                       cwd=tmp_path, env=env)
    assert local.returncode == 0, local.stderr[-3000:]
    for name in TABLES:
        assert (tmp_path / "cluster" / name).read_bytes() == \
            (tmp_path / "local" / name).read_bytes(), name
    gates = sorted(p.name for p in (tmp_path / "local" / "gates").glob("*.xml"))
    assert len(gates) == 3
    for name in gates:
        assert (tmp_path / "cluster" / "gates" / name).read_bytes() == \
            (tmp_path / "local" / "gates" / name).read_bytes(), name
    assert (tmp_path / "cluster" / "report.html").stat().st_size > 100_000


def test_a_failed_cluster_job_is_named_with_its_log(cluster, tmp_path):
    """Nodes without immunoprofile on their PATH (the README's warning): the run stops,
    naming the failed group job and the SLURM log that says why."""
    samples = _samples(tmp_path / "samples")
    env = dict(cluster, PATH=os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    run = _snakemake("--profile", str(REPO / "profiles" / "slurm"),
                     "--slurm-init-seconds-before-status-checks", POLL, "--retries", "0",
                     "--config", f"samples={samples}", f"output={tmp_path / 'out'}",
                     cwd=tmp_path, env=env)
    assert run.returncode != 0
    text = run.stdout + run.stderr
    assert "Error in group gate" in text
    logs = sorted((tmp_path / ".snakemake" / "slurm_logs" / "group_gate_gate_tube")
                  .glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in text
    assert "Error in rule gate_tube" in logs[0].read_text()
    # each tube's own log, named in the message too, says what went wrong on the node
    tube_logs = sorted((tmp_path / "out" / "logs" / "gate_tube").glob("*.log"))
    assert tube_logs and all(str(log) in text for log in tube_logs)
    assert any("immunoprofile: command not found" in log.read_text() for log in tube_logs)
    assert not (tmp_path / "out" / "profiles.csv").exists()
