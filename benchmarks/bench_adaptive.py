"""Adaptive gating across the layout envelope: accuracy, flags and the worst cases.

Simulated tubes (SIMULATED data: ``immunoprofile.datasets.envelope.envelope_cases``, the envelope of
issue 12: fluorescence gains ±0.5 decade, scatter gain ±0.3 decade, beads anywhere from
10^4.0 to 10^5.3 and at any scatter, monocyte SSC down to 2× the lymphocytes', CLL cells
CD45-dim and up to 99 % of lymphocytes, CD4 or CD8 down to 20 cells/µL, spreads ×0.7–1.5)
are gated with adaptive gating (and, with ``--compare-fixed``, with the fixed templates in
the same run). For every tube: each gate's F1 against the true labels and the tube's count
(NK, CD4+ or CD8+ per µL) against the truth, within max(5 %, 3 counting SD). A tube is
*covered* when it is right or flagged ``GATE_UNCERTAIN``.

    python benchmarks/bench_adaptive.py --cases 200 --seed 0 [--compare-fixed]
    python benchmarks/bench_adaptive.py --speed      # one 200k-event tube: placement's cost

``--speed`` times, on one simulated 200k-event CD4 tube, the compiled engine gating it with
the fixed template (gating alone), placing its gates (placement alone) and both together
(what ``--gating adaptive`` does per tube), and with the gating plots' views binned
from the placement's subsample (what ``immunoprofile gate`` does), best of 7, warm.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from immunoprofile.datasets.envelope import write_envelope
from immunoprofile.datasets.evaluation import covered, evaluate_simulated_batch


def summarise(name: str, records: list[dict], seconds: float) -> None:
    n = len(records)
    flagged = sum(r["uncertain"] for r in records)
    failed = sum(bool(r["error"]) for r in records)
    uncovered = [r for r in records if not covered(r)]
    print(f"\n== {name}: {n} tubes, gated in {seconds:.1f} s")
    gates = sorted({g for r in records for g in r["f1"]})
    for gate in gates:
        f1 = np.array([r["f1"][gate] for r in records if gate in r["f1"]])
        print(f"  F1 {gate:12s} min {f1.min():.3f}  p1 {np.quantile(f1, 0.01):.3f}  "
              f"median {np.median(f1):.4f}  below 0.95: {int((f1 < 0.95).sum())}")
    err = np.array([abs(r["measured"] - r["true"]) / r["true"] for r in records
                    if not r["error"] and r["true"] > 0])
    within = sum(r["within"] for r in records)
    print(f"  counts within max(5 %, 3 SD): {within}/{n}; relative error median "
          f"{np.median(err):.2%}, p95 {np.quantile(err, 0.95):.2%}, max {err.max():.2%}")
    perfect = sum(r["within_perfect_gate"] for r in records if not r["error"])
    print(f"  counts within max(5 %, 3 SD) of a perfect gate's count on the same tube: "
          f"{perfect}/{n}")
    print(f"  flagged GATE_UNCERTAIN: {flagged}/{n} ({flagged / n:.1%}); failed: {failed}")
    print(f"  not covered (wrong and not flagged): {len(uncovered)} against the blood's "
          f"truth; {sum(not covered(r, against='within_perfect_gate') for r in records)} "
          "against a perfect gate's count")
    by_gate: dict[str, int] = {}
    for r in records:
        for flag in r["flags"].split(";"):
            if flag.startswith("GATE_UNCERTAIN:"):
                by_gate[flag.split(":", 1)[1]] = by_gate.get(flag.split(":", 1)[1], 0) + 1
    if by_gate:
        print("  flags by gate: " + ", ".join(f"{g} {n}" for g, n in sorted(by_gate.items())))
        needless = [r for r in records if r["uncertain"] and not r["error"]
                    and r["within_perfect_gate"] and all(f >= 0.95 for f in r["f1"].values())]
        print(f"  flagged tubes that were right all the same: {len(needless)} of {flagged}")
        for r in needless[:12]:
            print(f"    {r['sample_id']}: {r['flags']}")
    for r in records:
        if not covered(r, against="within_perfect_gate"):
            low = {g: round(f, 3) for g, f in r["f1"].items() if f < 0.95}
            print(f"  NOT COVERED {r['sample_id']}: {r['population']} {r['measured']:.1f} vs "
                  f"perfect gate {r['perfect_gate']:.1f}, truth {r['true']:.1f}; F1<0.95 "
                  f"{low} flags [{r['flags']}] {r['error']}")
    worst = sorted(records, key=lambda r: (covered(r), -abs(r["measured"] - r["true"])
                                           / max(r["tolerance"], 1e-9)
                                           if not math.isnan(r["measured"]) else 0))[:8]
    print("  worst cases:")
    for r in worst:
        low = {g: round(f, 3) for g, f in r["f1"].items() if f < 0.95}
        print(f"    {r['sample_id']}: {r['population']} {r['measured']:.1f} vs true "
              f"{r['true']:.1f} (tolerance {r['tolerance']:.1f}) F1<0.95 {low} "
              f"flags [{r['flags']}] {r['error']}")


def speed(events: int = 200_000, repeat: int = 7) -> None:
    from immunoprofile.datasets.simulate import PatientSpec, simulate_tube
    from immunoprofile.datasets.tube_files import write_tube
    from immunoprofile.gating.adaptive_gating import gate_tube_adaptive, place_tube
    from immunoprofile.gating.compiled_gating import count_tube_compiled
    from immunoprofile.gating.panels import detect_panel
    from immunoprofile.gating.templates import adaptive_template_dir
    from immunoprofile.io.fcs import read_tube

    patient = PatientSpec("S", b_cells_per_ul=20_000, cd4_per_ul=800, cd8_per_ul=500,
                          nk_per_ul=300)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tube(simulate_tube(patient, "cd4", events=events, volume_ul=10, seed=5),
                          Path(tmp) / "S_cd4.fcs")
        tube = read_tube(path)
        panel = detect_panel(tube.markers)
        folder = str(adaptive_template_dir())

        def best(func) -> float:
            func()
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                func()
                times.append(time.perf_counter() - t0)
            return min(times)

        alone = best(lambda: count_tube_compiled(tube, panel))
        place = best(lambda: place_tube(tube, panel, folder))
        both = best(lambda: gate_tube_adaptive(tube, panel, folder))
        viewed = best(lambda: gate_tube_adaptive(tube, panel, folder, views=True))
    print(f"one SIMULATED {events:,}-event CD4 tube, best of {repeat}:")
    print(f"  gating alone (fixed template, compiled engine): {alone * 1e3:8.2f} ms")
    print(f"  placement alone:                                {place * 1e3:8.2f} ms")
    print(f"  placement + gating (--gating adaptive):         {both * 1e3:8.2f} ms "
          f"({both / alone:.1f}× gating alone)")
    print(f"  … and binning the gating plots' views (what `gate` does): {viewed * 1e3:8.2f} ms "
          f"(+{(viewed - both) * 1e3:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--compare-fixed", action="store_true")
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()
    if args.speed:
        speed()
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_envelope(tmp, args.cases, seed=args.seed, events=args.events)
        print(f"{args.cases} SIMULATED envelope cases × 3 tubes written in "
              f"{time.perf_counter() - t0:.1f} s (seed {args.seed}, {args.events} events)")
        for gating in (("adaptive", "fixed") if args.compare_fixed else ("adaptive",)):
            t0 = time.perf_counter()
            records = evaluate_simulated_batch(Path(tmp), gating)
            summarise(gating, records, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
