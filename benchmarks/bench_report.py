"""Time the HTML report for sample_data, and the gating plots' rate per core.

    python benchmarks/bench_report.py

Gates sample_data/ (SIMULATED tubes) into a temporary folder, predicts TFR risk, then:

- the plot rate, one process (one core): every tube's gating plots as the report draws
  them (from the views the run binned, OUT/gates/*.views.npz, no FCS file read), and in
  the same run as they are drawn from each FCS file read again (the gates the run placed,
  OUT/gates/*.xml), as SVG (the report's renderer) and as PNG by Matplotlib (the renderer
  of `immunoprofile plot` files), and the ratios;
- `immunoprofile.report.write_report` (18 tubes, 90 gating plots) in this process, and the
  `immunoprofile report` command as a user runs it (interpreter start and imports
  included).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plot_rate(out: Path, repeat: int = 3) -> None:
    import pandas as pd

    from immunoprofile.gating.gate_views import unpack_views
    from immunoprofile.io.manifest import find_manifest, read_manifest
    from immunoprofile.io.output_files import gate_views_path
    from immunoprofile.report.gating_plots import plot_gates, plots_from_views
    from immunoprofile.report.html import _run_gates, _run_placement

    gates = _run_gates(out)
    requests = read_manifest(find_manifest(REPO / "sample_data", None),
                             REPO / "sample_data").requests
    populations = pd.read_csv(out / "populations.csv")
    counts = {sid: {r.population: (r.events, r.parent_events) for r in rows.itertuples()}
              for sid, rows in populations.groupby("sample_id")}

    def from_views(r):
        data = gate_views_path(out, r.sample_id).read_bytes()
        return plots_from_views(unpack_views(data), counts[r.sample_id])

    def from_file(r):
        return plot_gates(r.path, tube=r.tube, placement=_run_placement(out, r.sample_id, gates))

    def draw(plots_of, render) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for r in requests:
                for plot in plots_of(r):
                    render(plot)
            best = min(best, time.perf_counter() - t0)
        return best

    draw(from_views, lambda p: p.svg)  # warm: imports, kernels
    draw(from_file, lambda p: p.svg)
    views = draw(from_views, lambda p: p.svg)
    svg = draw(from_file, lambda p: p.svg)
    png = draw(from_file, lambda p: p.png)
    n = len(requests)
    print(f"gating plots of {n} SIMULATED tubes (5 gates each), one core, best of {repeat}:")
    print(f"  SVG from the run's views (the report):  {n / views:6.1f} tubes/s   (target: >= 20)")
    print(f"  SVG from each FCS file, read again:     {n / svg:6.1f} tubes/s")
    print(f"  PNG (Matplotlib) from each FCS file:    {n / png:6.1f} tubes/s")
    print(f"  views / file: {svg / views:.1f}×; SVG / PNG: {png / svg:.1f}×")


def main() -> None:
    from immunoprofile import gate_batch, write_results
    from immunoprofile.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        write_results(gate_batch(REPO / "sample_data"), out)
        subprocess.run([sys.executable, "-m", "immunoprofile.cli", "predict", str(out), "-o",
                        str(out / "predictions.csv")], check=True, capture_output=True)
        plot_rate(out)
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
