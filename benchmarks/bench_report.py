"""Time the HTML report for sample_data (the issue asks for under 30 s).

    python benchmarks/bench_report.py

Gates sample_data/ into a temporary folder, predicts TFR risk, then times
`immunoprofile.report.write_report` (18 tubes, 90 gating plots) in this process and the
`immunoprofile report` command as a user runs it (interpreter start and imports included).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from immunoprofile import gate_batch, write_results
    from immunoprofile.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        write_results(gate_batch(REPO / "sample_data"), out)
        subprocess.run([sys.executable, "-m", "immunoprofile.cli", "predict", str(out), "-o",
                        str(out / "predictions.csv")], check=True, capture_output=True)
        write_report(out)  # warm: Numba compiles and the program cache
        t0 = time.perf_counter()
        path = write_report(out)
        in_process = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "immunoprofile.cli", "report", str(out)],
                       check=True, capture_output=True)
        command = time.perf_counter() - t0
        size = path.stat().st_size / 1e6
    print(f"report for sample_data (18 tubes, 90 gating plots, {size:.1f} MB):")
    print(f"  write_report in an open session: {in_process:6.1f} s")
    print(f"  immunoprofile report command:    {command:6.1f} s   (target: < 30 s)")


if __name__ == "__main__":
    main()
