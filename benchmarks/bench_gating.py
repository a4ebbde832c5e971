"""Benchmark: FlowKit and the compiled engine side by side, in one run, on the same tubes.

    python benchmarks/bench_gating.py                 # 100k, 1M, 5M events + end to end
    python benchmarks/bench_gating.py --sizes 100000 1000000 --skip-batch

Per tube size it simulates a TBNK tube (FlowIO FCS 3.1, float32, with $SPILLOVER), gates it
with a 7-gate strategy (beads, singlets, lymphocytes as a sloped CD45/SSC polygon on a
logicle axis, CD3+, CD3-, NK, NKT) through FlowKit and through ``immunoprofile.engine``
(its generated kernel; the generic kernel alongside), checks every gate's count is equal,
and prints: events, FlowKit s, engine s (1 thread and all threads; the generic kernel on 1
thread), the ratio, events/s, the engine's time as a multiple of one memory pass over the
event data (a vectorised read of every stored value, timed in the same run), the engine's
peak extra memory as a multiple of the raw event matrix (measured in a child process from
the kernel's high-water mark), and how many events the generated kernel left to the
generic one.

The end-to-end part writes 60 tubes of 200k events (20 patients × 3 tubes) and times
``immunoprofile gate --gating fixed`` (the installed command, as a user runs it:
interpreter start, imports and all tables written) and ``gate_batch`` (the same in an open
Python session), with one job and with one per CPU, against the same work through FlowKit's
Session (load + gate + per-gate statistics, in the open session), and checks the counts
are identical; and ``immunoprofile gate --gating adaptive`` (every tube's gates placed from
its own events, then counted) and ``gate_batch(..., gating="adaptive")`` (the same in the
open session: tables and placed gates in memory, as for the fixed ``gate_batch``), against
the same Session.
The command is run once untimed before, so that its compiled templates and its
ahead-of-time kernels exist as after any earlier run on the machine.

Plain Python, no pytest: timings belong here, never in unit tests. Best of ``--repeat``
runs; page cache warm (the files were just written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import flowkit as fk
import numba
import numpy as np
import pandas as pd

from immunoprofile import engine
from immunoprofile.datasets.cohort import cohort_specs, write_cohort
from immunoprofile.datasets.simulate import PatientSpec, simulate_tube
from immunoprofile.datasets.tube_files import write_tube
from immunoprofile.io.events import read_events

LOGICLE = fk.transforms.LogicleTransform(262144.0, 0.5, 4.5, 0.0)


def tbnk_strategy() -> fk.GatingStrategy:
    """Seven gates on an NK tube (CD3 FITC, CD16+56 PE, CD45 PerCP-Cy5.5)."""
    s = fk.GatingStrategy()
    s.add_transform("logicle", LOGICLE)

    def fl(channel, lo=None, hi=None):
        return fk.Dimension(channel, "FCS", "logicle", range_min=lo, range_max=hi)

    root = ("root",)
    s.add_gate(fk.gates.RectangleGate("Beads", [fl("FITC-A", 0.7733), fl("PE-A", 0.7733)]),
               gate_path=root)
    s.add_gate(fk.gates.PolygonGate(
        "Singlets", [fk.Dimension("FSC-A"), fk.Dimension("FSC-H")],
        [[15000, 10200], [300000, 204000], [300000, 300000], [15000, 15000]]), gate_path=root)
    s.add_gate(fk.gates.PolygonGate(
        "Lymphocytes", [fl("PerCP-Cy5-5-A"), fk.Dimension("SSC-A", "FCS")],
        [[0.47, -1000], [0.83, -1000], [0.82, 30000], [0.70, 45000], [0.50, 40000]]),
        gate_path=("root", "Singlets"))
    lymph = ("root", "Singlets", "Lymphocytes")
    s.add_gate(fk.gates.RectangleGate("CD3pos", [fl("FITC-A", 0.3813)]), gate_path=lymph)
    s.add_gate(fk.gates.RectangleGate("CD3neg", [fl("FITC-A", None, 0.3813)]),
               gate_path=lymph)
    s.add_gate(fk.gates.RectangleGate("NK", [fl("PE-A", 0.3813)]),
               gate_path=lymph + ("CD3neg",))
    s.add_gate(fk.gates.RectangleGate("NKT", [fl("PE-A", 0.3813)]),
               gate_path=lymph + ("CD3pos",))
    return s


@numba.njit(cache=True, nogil=True, fastmath=True)
def _one_pass_numba(flat):
    # one read of every stored value, vectorised (fastmath lets the sum be reordered)
    total = np.float32(0.0)
    for i in range(flat.shape[0]):
        total += flat[i]
    return total


def memory_floor(data: np.ndarray, repeat: int) -> float:
    """Seconds for one read of the event matrix: the faster of a vectorised Numba loop and
    NumPy's (SIMD, pairwise) sum, each reading every stored value once."""
    flat = data.reshape(-1)
    _one_pass_numba(flat[:16])
    return min(best_of(repeat, lambda: _one_pass_numba(flat)),
               best_of(repeat, lambda: flat.sum()))


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def flowkit_counts(strategy, sample) -> dict:
    results = strategy.gate_sample(sample)
    strategy.clear_cache()
    return {g: int(results.get_gate_count(g[0], g[1])) for g in strategy.get_gate_ids()}


def memory_probe(path: str) -> None:
    """Child process: the engine's peak extra memory while counting one tube (bytes)."""
    strategy = tbnk_strategy()
    plan = engine.compile(strategy, kernel="generated")
    # Gate the tube once first, so that every kernel the call uses (the generic one for
    # marked events included) is loaded before measuring; then map it afresh, so that the
    # measured call still brings the mapped matrix's pages in.
    plan.counts(read_events(path), threads=1)
    events = read_events(path)
    status = Path("/proc/self/status")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        baseline = _vm(status, "VmRSS")
        plan.counts(events, threads=1)
        peak = _vm(status, "VmHWM")
    except OSError:
        print(json.dumps({"extra_bytes": None}))
        return
    print(json.dumps({"extra_bytes": peak - baseline}))


def _vm(status: Path, key: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(key)


def bench_sizes(sizes, repeat: int, folder: Path) -> list[dict]:
    rows = []
    strategy = tbnk_strategy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineFallbackWarning)
        plan = engine.compile(strategy, kernel="generated")
        generic = engine.compile(strategy, kernel="generic")
    for n in sizes:
        path = folder / f"tbnk_{n}.fcs"
        tube = simulate_tube(cohort_specs()[2], "nk", events=n, seed=n % 9973)
        write_tube(tube, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = fk.Sample(str(path))
        events = read_events(path)
        matrix_bytes = events.data.nbytes
        expected = flowkit_counts(strategy, sample)
        got = plan.counts(events, threads=1)
        if got != expected:
            raise SystemExit(f"{n} events: counts differ\nFlowKit {expected}\nengine  {got}")
        marked = plan.marked_events
        if plan.counts(events) != expected or generic.counts(events, threads=1) != expected:
            raise SystemExit(f"{n} events: threaded or generic-kernel counts differ from FlowKit")
        t_fk = best_of(max(1, repeat // 2), lambda s=sample: flowkit_counts(strategy, s))
        t_1 = best_of(repeat, lambda e=events: plan.counts(e, threads=1))
        t_all = best_of(repeat, lambda e=events: plan.counts(e))
        t_generic = best_of(repeat, lambda e=events: generic.counts(e, threads=1))
        t_floor = memory_floor(np.asarray(events.data), repeat)
        probe = subprocess.run([sys.executable, __file__, "--memory-probe", str(path)],
                               capture_output=True, text=True, check=True)
        extra = json.loads(probe.stdout.strip().splitlines()[-1])["extra_bytes"]
        rows.append({
            "events": n, "flowkit_s": t_fk, "engine_1t_s": t_1, "engine_all_s": t_all,
            "generic_1t_s": t_generic, "ratio_1t": t_fk / t_1, "ratio_all": t_fk / t_all,
            "events_per_s_1t": n / t_1, "events_per_s_all": n / t_all,
            "floor_s": t_floor, "x_floor_1t": t_1 / t_floor,
            "peak_x_matrix": (extra / matrix_bytes) if extra is not None else float("nan"),
            "gates": len(expected), "marked": marked,
        })
    return rows


def _patients(n: int) -> list[PatientSpec]:
    base = cohort_specs()
    out = []
    for i in range(n):
        p = base[i % len(base)]
        scale = 0.7 + 0.6 * ((i * 37) % 11) / 10
        out.append(PatientSpec(f"B{i + 1:02d}", b_cells_per_ul=p.b_cells_per_ul * scale,
                               cd4_per_ul=p.cd4_per_ul * scale, cd8_per_ul=p.cd8_per_ul,
                               nk_per_ul=p.nk_per_ul * scale))
    return out


def _command() -> list[str]:
    """``immunoprofile`` as a user runs it: the installed console script (whose stub
    imports ``immunoprofile.cli`` and calls ``main``), else the same stub through this
    interpreter."""
    script = Path(sys.executable).with_name("immunoprofile")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from immunoprofile.cli import main; "
                                  "sys.exit(main())"]


def bench_batch(folder: Path, patients: int, events: int, jobs: int, repeat: int) -> dict:
    samples = folder / "batch"
    write_cohort(samples, _patients(patients), events=events, seed=99)
    files = sorted(samples.glob("*.fcs"))
    # Fixed gates: the same gates as FlowKit's Session below, so the counts can be equal.
    cli = _command() + ["gate", str(samples), "-q", "--gating", "fixed"]
    adaptive = _command() + ["gate", str(samples), "-q", "--gating", "adaptive"]
    # Python's default of caching bytecode (some sandboxes switch it off, which recompiles
    # the package in every process, ~40 ms): as on a user's machine.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # One untimed run first: it compiles the three templates, stores the programs and
    # builds the kernels ahead of time, as any earlier run on this machine would have.
    subprocess.run(cli + ["-o", str(folder / "out_warmup")], check=True, env=env)
    subprocess.run(adaptive + ["-o", str(folder / "out_warmup_a")], check=True, env=env)
    runs = {}
    for j in sorted({1, jobs}):
        out = folder / f"out_j{j}"
        runs[f"cli_j{j}_s"] = best_of(repeat, lambda j=j, out=out: subprocess.run(
            cli + ["-o", str(out), "-j", str(j)], check=True, env=env))
        # adaptive gating: every tube's gates placed from its events, then counted
        runs[f"cli_adaptive_j{j}_s"] = best_of(repeat, lambda j=j: subprocess.run(
            adaptive + ["-o", str(folder / f"out_a{j}"), "-j", str(j)], check=True, env=env))
    from immunoprofile import gate_batch

    for j in sorted({1, jobs}):
        runs[f"api_j{j}_s"] = best_of(repeat, lambda j=j: gate_batch(samples, jobs=j,
                                                                      gating="fixed"))
        # the same, adaptive: every tube's gates placed and counted, in the open session
        runs[f"api_adaptive_j{j}_s"] = best_of(repeat, lambda j=j: gate_batch(
            samples, jobs=j, gating="adaptive"))
    ours = pd.read_csv(folder / "out_j1" / "populations.csv")

    # The same work through FlowKit's Session: load, gate, statistics (one Session per tube
    # type, as each tube type has its own template).
    from immunoprofile.gating.templates import template_path

    start = time.perf_counter()
    reports = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tube in ("nk", "cd4", "cd8"):
            session = fk.Session(gating_strategy=str(template_path(tube)))
            session.add_samples([str(f) for f in files if f.stem.endswith("_" + tube)])
            session.analyze_samples()
            reports.append(session.get_analysis_report())
    t_session = time.perf_counter() - start
    report = pd.concat(reports)
    theirs = {(Path(str(r.sample_id)).stem, r.gate_name): int(r.count)
              for r in report.itertuples()}
    mine = {(r.sample_id, r.population): int(r.events) for r in ours.itertuples()}
    if mine != theirs:
        differ = [k for k in mine if mine.get(k) != theirs.get(k)][:5]
        raise SystemExit(f"end-to-end counts differ, e.g. {differ}")
    return {"tubes": len(files), "events_per_tube": events, "session_s": t_session,
            **runs,
            **{k.replace("_s", "_ratio"): t_session / t for k, t in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--batch-patients", type=int, default=20)
    parser.add_argument("--batch-events", type=int, default=200_000)
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Numba threads {numba.config.NUMBA_NUM_THREADS}, FlowKit {fk.__version__}, "
          f"numba {numba.__version__}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = bench_sizes(args.sizes, args.repeat, folder)
        table = pd.DataFrame(rows)
        print("\n## One tube, 7-gate TBNK strategy (counts equal to FlowKit's)\n")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if not args.skip_batch:
            batch = bench_batch(folder, args.batch_patients, args.batch_events,
                                os.cpu_count() or 1, max(1, args.repeat // 2))
            print("\n## End to end (counts equal to FlowKit Session's)\n")
            for key, value in batch.items():
                print(f"{key:>16}: {value:.4g}" if isinstance(value, float)
                      else f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
