"""Adaptive gating with --jobs N gates tubes in worker processes: when one worker dies
(killed, out of memory), only the tube that killed it fails; the others are gated again."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from immunoprofile.pipeline import batch

#: The tube whose worker dies (set by the test; read in the forked workers).
_KILLER: list[str] = []
_REAL_GATE = batch.gate_resumable


def _gate_or_die(resume, request, *args):
    if request.sample_id in _KILLER:
        os._exit(9)  # as the kernel's OOM killer would end the process
    return _REAL_GATE(resume, request, *args)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the test's stand-in for a dying worker reaches workers by fork")
def test_a_dead_worker_fails_only_its_own_tube(small_cohort, monkeypatch):
    reference = batch.gate_batch(small_cohort, jobs=1)
    killer = sorted(p.stem for p in small_cohort.glob("*.fcs"))[1]
    monkeypatch.setattr(batch, "gate_resumable", _gate_or_die)
    _KILLER.append(killer)
    try:
        result = batch.gate_batch(small_cohort, jobs=2)
    finally:
        _KILLER.clear()
    errors = list(result.tables["errors"].rows())
    assert [e["file"].endswith(f"{killer}.fcs") for e in errors] == [True], errors
    assert "the process gating it stopped, with no other tube beside it" in errors[0]["error"]
    ours = result.populations.reset_index(drop=True)
    theirs = reference.populations[reference.populations.sample_id != killer] \
        .reset_index(drop=True)
    assert ours.drop(columns=[c for c in ours if "second" in c]).equals(
        theirs.drop(columns=[c for c in theirs if "second" in c]))
