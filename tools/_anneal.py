"""A tiny deterministic annealer used to reconstruct the reference cohort (see
``search_reference_cohort.py``). Not part of the package."""
from __future__ import annotations

import math

import numpy as np


def anneal(state, propose, cost, rng, iters=200_000, t0=1.0, t1=1e-3):
    best, best_c = state, cost(state)
    cur, cur_c = best, best_c
    for i in range(iters):
        if best_c == 0:
            break
        temp = t0 * (t1 / t0) ** (i / iters)
        cand = propose(cur, rng)
        c = cost(cand)
        if c <= cur_c or rng.random() < math.exp((cur_c - c) / temp):
            cur, cur_c = cand, c
            if c < best_c:
                best, best_c = cand, c
    return best, best_c


def p_window(published: str) -> tuple[float, float]:
    """Values that round to the published P value ('.79' -> [.785, .795))."""
    digits = len(published.split(".")[1])
    p = float(published)
    half = 0.5 * 10.0 ** -digits
    return p - half, p + half


def p_pen(p: float, published: str) -> float:
    lo, hi = p_window(published)
    if lo <= p < hi:
        return 0.0
    return abs(math.log(max(p, 1e-12)) - math.log(lo if p < lo else hi)) + 0.01


def range_pen(v, lo, hi, med=None, scale=1.0):
    v = np.asarray(v, float)
    pen = abs(v.min() - lo) + abs(v.max() - hi)
    if med is not None:
        pen += abs(np.median(v) - med)
    return pen / scale
