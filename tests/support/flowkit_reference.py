"""Helpers that compare the compiled engine with FlowKit, the reference, gate by gate."""

from __future__ import annotations

import warnings

import flowkit as fk
import numpy as np

from immunoprofile import engine
from immunoprofile.engine import codegen

#: Both kernels of a compiled plan are compared with FlowKit (the generated one only for
#: strategies it is written for).
KERNELS = ("generic", "generated")


def flowkit_membership(results, key) -> np.ndarray:
    """FlowKit's membership of one gate, named as the engine names it."""
    name, path = key
    try:
        return np.asarray(results.get_gate_membership(name, gate_path=path), dtype=bool)
    except Exception:  # quadrants are filed under their gate's path
        return np.asarray(results.get_gate_membership(name, gate_path=path[:-1]), dtype=bool)


def plan_kernels(plan) -> list[str]:
    """The kernels that can gate ``plan``: the generic one, and the generated one when the
    strategy has one."""
    if not plan.compiled:
        return ["auto"]
    return [k for k in KERNELS
            if k == "generic" or codegen.supported(plan.program) is None]


def assert_same_as_flowkit(strategy, sample: fk.Sample, source=None, sample_id=None,
                           threads=1, expect_compiled=True, kernels=KERNELS) -> dict:
    """Gate ``source`` (default: ``sample``) with the engine and ``sample`` with FlowKit.

    Every gate's membership must be equal, event for event, with each of ``kernels`` that
    can gate the strategy. Returns the engine's counts.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error" if expect_compiled else "ignore",
                              engine.EngineFallbackWarning)
        plan = engine.compile(strategy, sample_id=sample_id)
    assert plan.compiled == expect_compiled, plan.fallback_reason
    try:
        results = strategy.gate_sample(sample)
    finally:
        strategy.clear_cache()
    counts = {}
    for kernel in plan_kernels(plan):
        if kernel not in kernels and kernel != "auto":
            continue
        plan.kernel = kernel
        membership = plan.membership(sample if source is None else source, threads=threads)
        for key in plan.gate_ids:
            expected = flowkit_membership(results, key)
            got = membership[key]
            if not np.array_equal(expected, got):
                differ = np.nonzero(expected != got)[0]
                raise AssertionError(
                    f"gate {key}, {kernel} kernel: {differ.size} events differ from FlowKit "
                    f"(first {differ[:5].tolist()}; FlowKit {expected[differ[:5]].tolist()})")
            counts[key] = int(got.sum())
    return counts
