"""Helpers that compare the compiled engine with FlowKit, the reference, gate by gate."""

from __future__ import annotations

import warnings

import flowkit as fk
import numpy as np

from immunoprofile import engine


def flowkit_membership(results, key) -> np.ndarray:
    """FlowKit's membership of one gate, named as the engine names it."""
    name, path = key
    try:
        return np.asarray(results.get_gate_membership(name, gate_path=path), dtype=bool)
    except Exception:  # noqa: BLE001 - quadrants are filed under their gate's path
        return np.asarray(results.get_gate_membership(name, gate_path=path[:-1]), dtype=bool)


def assert_same_as_flowkit(strategy, sample: fk.Sample, source=None, sample_id=None,
                           threads=1, expect_compiled=True) -> dict:
    """Gate ``source`` (default: ``sample``) with the engine and ``sample`` with FlowKit.

    Every gate's membership must be equal, event for event. Returns the engine's counts.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error" if expect_compiled else "ignore",
                              engine.EngineFallbackWarning)
        plan = engine.compile(strategy, sample_id=sample_id)
    assert plan.compiled == expect_compiled, plan.fallback_reason
    membership = plan.membership(sample if source is None else source, threads=threads)
    try:
        results = strategy.gate_sample(sample)
    finally:
        strategy.clear_cache()
    counts = {}
    for key in plan.gate_ids:
        expected = flowkit_membership(results, key)
        got = membership[key]
        if not np.array_equal(expected, got):
            differ = np.nonzero(expected != got)[0]
            raise AssertionError(
                f"gate {key}: {differ.size} events differ from FlowKit "
                f"(first {differ[:5].tolist()}; FlowKit {expected[differ[:5]].tolist()})")
        counts[key] = int(got.sum())
    return counts
