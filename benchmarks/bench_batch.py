"""Thousands of tubes: the workflow's DAG, `immunoprofile gate`, `snakemake --cores N`, and
the memory of the profiles and report steps.

    python benchmarks/bench_batch.py --tubes 10000 [--events 2000] [--cores 2]
                                     [--tubes-per-job 100] [--skip-workflow]

Writes a batch of SIMULATED small tubes (`immunoprofile simulate --envelope`: random
patients across the gating issue's layout envelope, three tubes each), then times, each
as a command of its own (interpreter start included) with its peak memory (GNU time's
``%M``: the largest resident set of the command or of any one of its children):

1. ``snakemake -n`` on the batch: building the DAG of one job per tube;
2. ``immunoprofile gate`` (``-j`` = cores): tubes/s;
3. ``snakemake --cores N`` (skipped with ``--skip-workflow``): tubes/s, the whole workflow,
   with the config's ``tubes_per_job`` (1 = one job per tube);
4. the workflow's ``profiles`` step (``immunoprofile tables``) and ``report`` step, run again
   as the rules run them, for their peak memory: neither may hold every tube's events;
   the report's size and its pages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_of(command: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a command: (seconds, peak resident memory in MB, result). The peak is GNU
    time's ``%M``: the largest resident set of the command or of any one of its children."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    result = subprocess.run([gnu_time, "-f", "PEAK_KB %M", *command], capture_output=True,
                            text=True, **kwargs)
    seconds = time.perf_counter() - t0
    lines = [line for line in result.stderr.splitlines() if line.startswith("PEAK_KB ")]
    peak = int(lines[-1].split()[1]) / 1024 if lines else float("nan")
    return seconds, peak, result


def check(result: subprocess.CompletedProcess, allowed=(0,)) -> None:
    if result.returncode not in allowed:
        sys.exit(f"{' '.join(map(str, result.args))} failed ({result.returncode}):\n"
                 f"{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tubes", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tubes-per-job", type=int, default=100)
    parser.add_argument("--skip-workflow", action="store_true")
    parser.add_argument("--keep", help="folder to write into and keep (default: temporary)")
    args = parser.parse_args()
    patients = -(-args.tubes // 3)
    tubes = 3 * patients
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    ip = [sys.executable, "-m", "immunoprofile.cli"]
    smk = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep) if args.keep else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        samples = root / "samples"
        t, _, result = peak_of([*ip, "simulate", str(samples), "--envelope", str(patients),
                                 "--events", str(args.events), "--seed", str(args.seed)],
                                env=env)
        check(result)
        size = sum(p.stat().st_size for p in samples.glob("*.fcs")) / 1e6
        print(f"{tubes:,} SIMULATED tubes ({patients:,} envelope patients × 3, "
              f"{args.events:,} events each, {size:,.0f} MB of FCS) written in {t:.0f} s")
        config = ["--config", f"samples={samples}"]

        t, peak, result = peak_of([*smk, "-n", "--quiet", "rules", *config,
                                   f"output={root / 'workflow'}"], cwd=root, env=env)
        check(result)
        print(f"  snakemake -n (DAG of {tubes:,} gating jobs + 5): {t:8.1f} s, "
              f"peak {peak:,.0f} MB")

        t, peak, result = peak_of([*ip, "gate", str(samples), "-o", str(root / "gate"), "-q",
                                   "-j", str(args.cores)], env=env)
        check(result, (0, 1))
        print(f"  immunoprofile gate -j {args.cores}: {t:8.1f} s = {tubes / t:7.1f} tubes/s, "
              f"peak {peak:,.0f} MB (exit {result.returncode}: 1 = some tubes failed, "
              "recorded)")

        if args.skip_workflow:  # the report of the gate command's output instead
            t, peak, result = peak_of([*ip, "report", str(root / "gate"), "--samples",
                                       str(samples)], env=env)
            check(result, (0, 1))
            report_line(root / "gate", t, peak, tubes)
            return
        t, peak, result = peak_of([*smk, "--cores", str(args.cores), "--quiet", "rules",
                                   *config, f"output={root / 'workflow'}",
                                   f"tubes_per_job={args.tubes_per_job}"], cwd=root, env=env)
        check(result, (0, 1))
        print(f"  snakemake --cores {args.cores} (tubes_per_job={args.tubes_per_job}): "
              f"{t:8.1f} s = {tubes / t:7.1f} tubes/s (exit {result.returncode}), peak "
              f"{peak:,.0f} MB")
        out = root / "workflow"
        t, peak, result = peak_of([*ip, "tables", str(samples), str(out / ".work" / "tubes"),
                                   "-o", str(root / "tables")], env=env)
        check(result, (0, 1))
        print(f"  profiles step (immunoprofile tables): {t:8.1f} s, peak {peak:,.0f} MB")
        t, peak, result = peak_of([*ip, "report", str(out), "--samples", str(samples)],
                                  env=env)
        check(result, (0, 1))
        report_line(out, t, peak, tubes)


def report_line(out: Path, seconds: float, peak: float, tubes: int) -> None:
    pages = sorted((out / "report_pages").glob("*.html"))
    main = (out / "report.html").stat().st_size / 1e6
    total = main + sum(p.stat().st_size for p in pages) / 1e6
    print(f"  report step: {seconds:8.1f} s = {tubes / seconds:6.1f} tubes/s, peak "
          f"{peak:,.0f} MB; report.html {main:.1f} MB + {len(pages)} pages, {total:,.0f} MB "
          "in all")


if __name__ == "__main__":
    main()
