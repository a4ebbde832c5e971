"""Adaptive gating across the layout envelope of issue 12 (SIMULATED tubes).

200 seeded random cases × 3 tubes from ``immunoprofile.datasets.envelope.envelope_cases``: every
fluorescence gain ±0.5 decade, scatter gain ±0.3 decade, beads from 10^4.0 to 10^5.3 in
each channel and at any scatter, monocyte SSC down to 2× the lymphocytes', CLL cells
CD45-dim and up to 99 % of the lymphocytes, CD4 or CD8 down to 20 cells/µL, spreads
×0.7–1.5. Each tube must be right — every gate's F1 ≥ 0.95 against the true labels and its
NK/CD4/CD8 count within max(5 %, 3 counting SD) — or flagged ``GATE_UNCERTAIN``, and
flagged tubes must stay few. ``benchmarks/bench_adaptive.py`` prints the distribution.

Two choices, stated here because they make the test weaker than the issue's words read
alone: the count is held to what a perfect gate gives on the same tube (its true events
over its true bead events), since about 0.3 % of perfectly gated tubes lie beyond 3
counting SD of the blood's concentration by the Poisson draw alone; and F1 is required of
populations of at least 100 true events — below that the tube carries
LOW_POPULATION_EVENTS (count CV above 10 %) and one event moves F1 by more than 0.01.
"""

from __future__ import annotations

import pytest

from immunoprofile.datasets.envelope import write_envelope
from immunoprofile.datasets.evaluation import evaluate_simulated_batch

CASES = 200
EVENTS = 20_000
#: Tubes of this seed known to be wrong and unflagged, with why. The issue's target is none;
#: the test fails when one of these becomes right (remove it) or another goes wrong.
KNOWN_WRONG: dict[str, str] = {}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("envelope")
    write_envelope(folder, CASES, seed=3, events=EVENTS)
    return evaluate_simulated_batch(folder, "adaptive")


def _right(r) -> bool:
    return not r["error"] and r["within_perfect_gate"] and \
        all(f >= 0.95 for f in r["scored_f1"].values())


@pytest.mark.slow
def test_every_tube_is_right_or_flagged(records):
    wrong = {r["sample_id"]: (r["population"], round(r["measured"], 1),
                              round(r["perfect_gate"], 1),
                              {g: round(f, 3) for g, f in r["scored_f1"].items() if f < 0.95},
                              r["flags"])
             for r in records if not (_right(r) or r["uncertain"])}
    assert set(wrong) == set(KNOWN_WRONG), wrong


@pytest.mark.slow
def test_flagged_tubes_are_few(records):
    flagged = [r["sample_id"] for r in records if r["uncertain"]]
    assert len(flagged) < 0.02 * len(records), flagged


@pytest.mark.slow
def test_no_tube_fails(records):
    assert not [r["error"] for r in records if r["error"]]
