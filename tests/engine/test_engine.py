"""The compiled gating engine gives FlowKit's answers, event for event.

FlowKit is the reference: the Gating-ML 2.0 compliance set (truth files), FlowKit itself on
sample data, simulated tubes of 10k to 5M events, a FlowJo workspace, every readable file
of the FCS corpus, and random gates and transforms drawn by hypothesis.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import flowkit as fk
import numpy as np
import pytest
from conftest import REPO, shared_path
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.flowkit_reference import assert_same_as_flowkit

from immunoprofile import engine
from immunoprofile.datasets.cohort import cohort_specs
from immunoprofile.datasets.simulate import random_instrument, simulate_tube
from immunoprofile.datasets.tube_files import write_tube
from immunoprofile.gating.panels import detect_panel
from immunoprofile.gating.templates import channel_map, load_strategy
from immunoprofile.io.fcs import read_tube


def _template_strategy(path: Path):
    tube = read_tube(path)
    panel = detect_panel(tube.markers)
    strategy = load_strategy(panel.tube, channel_map(panel, tube.markers, tube.scatter,
                                                     source=path.name))
    return tube, strategy


# --------------------------------------------------------------------- against FlowKit

@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "sample_data").glob("*.fcs")))
def test_sample_data_equals_flowkit(name):
    path = REPO / "sample_data" / name
    tube, strategy = _template_strategy(path)
    assert_same_as_flowkit(strategy, tube.sample, source=path)


def test_flowjo_workspace_equals_flowkit():
    folder = shared_path("fcs-corpus", "flowsom")
    workspace = fk.Workspace(str(folder / "gating.wsp"),
                             fcs_samples=[str(folder / "68983.fcs")])
    (sample_id,) = workspace.get_sample_ids()
    strategy = workspace.get_gating_strategy(sample_id)
    sample = workspace.get_sample(sample_id)
    counts = assert_same_as_flowkit(strategy, sample, source=folder / "68983.fcs",
                                    sample_id=sample_id)
    assert len(counts) == 15
    # and from the Sample FlowKit holds
    assert_same_as_flowkit(strategy, sample, sample_id=sample_id)


@pytest.mark.parametrize("events", [
    10_000, 100_000,
    pytest.param(1_000_000, marks=pytest.mark.slow),
    pytest.param(5_000_000, marks=pytest.mark.slow),
])
def test_simulated_tubes_equal_flowkit(tmp_path, events):
    patient = cohort_specs()[events % 5]
    tube = simulate_tube(patient, ("cd4", "cd8", "nk")[events % 3], events=events,
                         instrument=random_instrument(events), seed=events)
    path = write_tube(tube, tmp_path / "tube.fcs")
    read, strategy = _template_strategy(path)
    counts = assert_same_as_flowkit(strategy, read.sample, source=path, threads=None)
    assert counts[("Singlets", ("root",))] > events // 2


def test_threads_give_the_same_membership(tmp_path):
    tube = simulate_tube(cohort_specs()[3], "nk", events=300_000, seed=3)
    path = write_tube(tube, tmp_path / "tube.fcs")
    _, strategy = _template_strategy(path)
    plan = engine.compile(strategy)
    one = plan.membership(path, threads=1).bitmask
    many = plan.membership(path, threads=None).bitmask
    np.testing.assert_array_equal(one, many)
    assert plan.counts(path, threads=1) == plan.counts(path, threads=None)


def test_unsupported_strategy_falls_back_to_flowkit_with_one_warning():
    class HomemadeTransform(fk.transforms.LinearTransform):
        """A transform type the engine does not know: it must not guess."""

    path = REPO / "sample_data" / "P01_cd4.fcs"
    tube, _ = _template_strategy(path)
    strategy = fk.GatingStrategy()
    strategy.add_transform("mine", HomemadeTransform(262144.0, 0.0))
    dim = fk.Dimension("FSC-A", transformation_ref="mine", range_min=0.1)
    strategy.add_gate(fk.gates.RectangleGate("Big", [dim]), gate_path=("root",))
    with pytest.warns(engine.EngineFallbackWarning, match="HomemadeTransform") as caught:
        plan = engine.compile(strategy)
    assert len(caught) == 1
    assert not plan.compiled
    counts = plan.counts(path)
    expected = strategy.gate_sample(tube.sample).get_gate_count("Big")
    assert counts[("Big", ("root",))] == expected


# --------------------------------------------------------------------- the FCS corpus

def _corpus_files() -> list[Path]:
    root = shared_path("fcs-corpus")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".fcs", ".lmd"))


def _channel_strategy(sample: fk.Sample) -> fk.GatingStrategy:
    """Range gates at each channel's median, a logicle range and a polygon (uncompensated)."""
    events = sample.get_events(source="raw")
    strategy = fk.GatingStrategy()
    strategy.add_transform("logicle", fk.transforms.LogicleTransform(262144, 0.5, 4.5, 0))
    for i, label in enumerate(sample.pnn_labels[:8]):
        if sample.pnn_labels.index(label) != i:
            continue  # a repeated channel name: FlowKit and the engine both take the first
        median = float(np.median(events[:, i]))
        strategy.add_gate(fk.gates.RectangleGate(f"R{i}", [fk.Dimension(label,
                                                                         range_min=median)]),
                          gate_path=("root",))
    a, b = sample.pnn_labels[0], sample.pnn_labels[1]
    if a != b:
        qa = np.quantile(events[:, 0], [0.2, 0.8])
        qb = np.quantile(events[:, 1], [0.2, 0.8])
        strategy.add_gate(fk.gates.PolygonGate(
            "Poly", [fk.Dimension(a), fk.Dimension(b)],
            [[qa[0], qb[0]], [qa[1], qb[0] + 0.3 * (qb[1] - qb[0])], [qa[1], qb[1]],
             [qa[0] + 0.1 * (qa[1] - qa[0]), qb[1]]]), gate_path=("root",))
        strategy.add_gate(fk.gates.RectangleGate("Logicle", [fk.Dimension(
            b, transformation_ref="logicle", range_min=0.3, range_max=0.8)]),
            gate_path=("root",))
    return strategy


def test_corpus_files_gate_as_flowkit_reads_them():
    """Every corpus file FlowKit reads is read (memory-mapped) and gated to the same events."""
    compared = 0
    for path in _corpus_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample = fk.Sample(str(path))
        except Exception:  # files FlowKit refuses belong to issue 6
            continue
        if sample.event_count == 0:
            continue
        strategy = _channel_strategy(sample)
        try:
            assert_same_as_flowkit(strategy, sample, source=path)
        except AssertionError as exc:
            raise AssertionError(f"{path.name}: {exc}") from None
        compared += 1
    assert compared >= 30


# --------------------------------------------------------------------- hypothesis

@pytest.fixture(scope="module")
def hypothesis_tube(tmp_path_factory) -> tuple[Path, fk.Sample]:
    folder = tmp_path_factory.mktemp("hypothesis")
    tube = simulate_tube(cohort_specs()[1], "cd8", events=3_000,
                         instrument=random_instrument(11), seed=11)
    path = write_tube(tube, folder / "tube.fcs")
    return path, read_tube(path).sample


def _transforms():
    logicle = st.builds(
        lambda t, m, w, a: fk.transforms.LogicleTransform(t, min(w, m / 2 - 0.01),
                                                          m, min(a, m - 2 * min(w, m / 2 - 0.01))),
        st.sampled_from([262144.0, 100000.0, 10000.0]), st.floats(3.5, 5.0),
        st.floats(0.0, 1.2), st.floats(0.0, 1.0))
    hyperlog = st.builds(
        lambda t, m, w, a: fk.transforms.HyperlogTransform(t, w, m, min(a, m - 2 * w)),
        st.sampled_from([262144.0, 10000.0]), st.floats(3.5, 5.0), st.floats(0.1, 1.2),
        st.floats(0.0, 1.0))
    asinh = st.builds(fk.transforms.AsinhTransform, st.sampled_from([262144.0, 5000.0]),
                      st.floats(3.0, 5.0), st.floats(0.0, 1.0))
    log = st.builds(fk.transforms.LogTransform, st.sampled_from([262144.0, 10000.0]),
                    st.floats(2.0, 6.0))
    linear = st.builds(fk.transforms.LinearTransform, st.floats(1000.0, 300000.0),
                       st.floats(0.0, 2000.0))
    biex = st.builds(lambda w, n: fk.transforms.WSPBiexTransform(n, w),
                     st.sampled_from([-10.0, -100.0, -1000.0]), st.sampled_from([0.0, 1.0]))
    return st.one_of(st.none(), logicle, hyperlog, asinh, log, linear, biex)


@st.composite
def _random_gate(draw, sample: fk.Sample):
    """A random polygon, rectangle or ellipse on two channels, with random transforms."""
    labels = list(sample.pnn_labels)
    x_label, y_label = draw(st.permutations(labels))[:2]
    comp = draw(st.sampled_from(["uncompensated", "FCS"]))
    xforms = [draw(_transforms()), draw(_transforms())]
    strategy = fk.GatingStrategy()
    dims, spans = [], []
    for axis, (label, xform) in enumerate(zip((x_label, y_label), xforms, strict=True)):
        ref = None
        if xform is not None:
            ref = f"t{axis}"
            strategy.add_transform(ref, xform)
        values = sample.get_events(source="raw")[:, labels.index(label)]
        shown = values if xform is None else np.asarray(xform.apply(values.reshape(-1, 1)))
        shown = shown[np.isfinite(shown)]
        lo, hi = (np.quantile(shown, [0.02, 0.98]) if shown.size else (0.0, 1.0))
        spans.append((float(lo), float(max(hi, lo + 1e-6))))
        dims.append((label, ref))

    def coordinate(axis):
        lo, hi = spans[axis]
        return draw(st.floats(lo, hi))

    kind = draw(st.sampled_from(["polygon", "rectangle", "ellipse"]))
    if kind == "polygon":
        n = draw(st.integers(3, 8))
        vertices = [[coordinate(0), coordinate(1)] for _ in range(n)]
        gate = fk.gates.PolygonGate("G", [fk.Dimension(lbl, comp, ref) for lbl, ref in dims],
                                    vertices, use_complement=draw(st.booleans()))
    elif kind == "rectangle":
        dimensions = []
        for axis, (label, ref) in enumerate(dims):
            bounds = sorted([coordinate(axis), coordinate(axis)])
            low = bounds[0] if draw(st.booleans()) else None
            high = bounds[1] if draw(st.booleans()) else None
            dimensions.append(fk.Dimension(label, comp, ref, range_min=low, range_max=high))
        gate = fk.gates.RectangleGate("G", dimensions, use_complement=draw(st.booleans()))
    else:
        sx = (spans[0][1] - spans[0][0]) / 4
        sy = (spans[1][1] - spans[1][0]) / 4
        rho = draw(st.floats(-0.9, 0.9))
        cov = [[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]]
        gate = fk.gates.EllipsoidGate("G", [fk.Dimension(lbl, comp, ref) for lbl, ref in dims],
                                      [coordinate(0), coordinate(1)], cov,
                                      draw(st.floats(0.5, 6.0)))
    strategy.add_gate(gate, gate_path=("root",))
    child = fk.gates.RectangleGate("Child", [fk.Dimension(dims[0][0], comp, dims[0][1],
                                                          range_min=coordinate(0))])
    strategy.add_gate(child, gate_path=("root", "G"))
    return strategy


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_random_gates_and_transforms_equal_flowkit(hypothesis_tube, data):
    path, sample = hypothesis_tube
    strategy = data.draw(_random_gate(sample))
    assert_same_as_flowkit(strategy, sample, source=path)


@settings(max_examples=40, deadline=None)
@example(vertices=[(0, 0), (0, 0), (0, 0)], bounds=(0, 0, 0, 0))  # an empty range [0, 0)
@given(vertices=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=3,
                         max_size=7),
       bounds=st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 12),
                        st.integers(0, 12)))
def test_events_on_gate_edges_follow_flowkit(vertices, bounds):
    """Events on vertices, edges and range bounds: FlowKit's half-open semantics exactly."""
    grid = np.array([(x, y) for x in range(-1, 14) for y in range(-1, 14)], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = fk.Sample(grid, sample_id="grid", channel_labels=["X", "Y"])
    strategy = fk.GatingStrategy()
    strategy.add_gate(fk.gates.PolygonGate("Poly", [fk.Dimension("X"), fk.Dimension("Y")],
                                           [list(v) for v in vertices]), gate_path=("root",))
    x0, x1, y0, y1 = bounds
    strategy.add_gate(fk.gates.RectangleGate("Rect", [
        fk.Dimension("X", range_min=min(x0, x1), range_max=max(x0, x1)),
        fk.Dimension("Y", range_min=min(y0, y1))]), gate_path=("root",))
    assert_same_as_flowkit(strategy, sample)


# --------------------------------------------------------------------- stored programs

def test_stored_program_gates_identically(tmp_path, monkeypatch):
    from immunoprofile.engine import program_store

    monkeypatch.setenv("IMMUNOPROFILE_CACHE", str(tmp_path / "programs"))
    path = REPO / "sample_data" / "P02_nk.fcs"
    tube, strategy = _template_strategy(path)
    plan = engine.compile(strategy)
    program_store.save_program("k", plan.program)
    loaded = program_store.load_program("k")
    assert loaded is not None
    again = engine.GatingPlan.from_program(loaded)
    assert again.gate_ids == plan.gate_ids
    np.testing.assert_array_equal(again.membership(path).bitmask,
                                  plan.membership(path).bitmask)
    # a damaged or foreign file is ignored, never trusted
    stored = program_store.cache_dir() / "k.json"
    stored.write_text(stored.read_text()[:100])
    assert program_store.load_program("k") is None
    stored.write_text('{"format": 999}')
    assert program_store.load_program("k") is None


def test_program_key_names_the_template_and_versions():
    from immunoprofile.engine.program_store import program_key

    assert program_key("<a/>") == program_key("<a/>")
    assert program_key("<a/>") != program_key("<b/>")


# --------------------------------------------------------------------- the pipeline

def test_batch_tables_are_the_same_with_either_engine(small_cohort):
    from immunoprofile import gate_batch

    compiled = gate_batch(small_cohort, engine="compiled", jobs=2)
    reference = gate_batch(small_cohort, engine="flowkit")
    assert compiled.ok and reference.ok
    for table in ("populations", "profiles", "samples"):
        ours = getattr(compiled, table).reset_index(drop=True)
        theirs = getattr(reference, table).reset_index(drop=True)
        assert ours.equals(theirs), table
