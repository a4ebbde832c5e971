"""Odd files and odd gates, where an engine is most likely to part from FlowKit.

Each case was found by review or by hypothesis; each is compared with FlowKit, event for
event, or must fail clearly.
"""

from __future__ import annotations

import warnings

import flowkit as fk
import numpy as np
import pytest
from flowkit import Dimension, gates
from flowkit import transforms as T
from flowkit._models.dimension import RatioDimension
from support.fcs_writer import write_fcs
from support.flowkit_reference import assert_same_as_flowkit

from immunoprofile import engine


def _sample(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.Sample(str(path))


def test_channel_without_pnn_decodes_by_channel_number(tmp_path):
    """FlowIO skips a channel with no $PnN but applies $PnE/$PnG by channel number."""
    data = np.random.default_rng(1).integers(0, 1024, size=(2000, 3)).astype(np.uint16)
    path = write_fcs(tmp_path / "no_pnn.fcs", data, ["FL1-H", "FL2-H", "FL3-H"],
                     datatype="I", bits=16, ranges=[1024] * 3,
                     amplification=["0,0", "0,0", "4,1"], drop=("$P2N",))
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.RectangleGate("FL3", [Dimension("FL3-H", range_min=500.0)]),
                      gate_path=("root",))
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_integer_range_of_one_masks_every_bit(tmp_path):
    """$PnR = 1: FlowIO masks with next_pow2(1) - 1 = 0, so every value reads 0."""
    data = np.array([[5, 7], [0, 3], [9, 1000]], dtype=np.uint16)
    path = write_fcs(tmp_path / "pnr1.fcs", data, ["FL1-H", "FL2-H"], datatype="I", bits=16,
                     ranges=[1, 1024])
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.RectangleGate("Pos", [Dimension("FL1-H", range_min=1.0)]),
                      gate_path=("root",))
    counts = assert_same_as_flowkit(strategy, _sample(path), source=path)
    assert counts[("Pos", ("root",))] == 0


def test_ratio_over_zero_is_inf_or_nan_not_an_error(tmp_path):
    data = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    path = write_fcs(tmp_path / "ratio.fcs", data, ["FL1-A", "FL2-A"])
    strategy = fk.GatingStrategy()
    strategy.add_transform("ratio", T.RatioTransform(["FL1-A", "FL2-A"], 1.0, 0.0, 0.0))
    strategy.add_gate(gates.RectangleGate(
        "R", [RatioDimension("ratio", None, None, range_min=1.0, range_max=1e308)]),
        gate_path=("root",))
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_hyperlog_where_flowkit_finds_no_root(tmp_path):
    """flowutils' hyperlog answers -1 for some huge inputs; so must the engine."""
    values = np.array([786836466535561.1, 851892219810239.0, 6.2e29, 100.0, 2.5e13, 3e12])
    path = write_fcs(tmp_path / "huge.fcs", np.stack([values, values], axis=1),
                     ["FL1-A", "FL2-A"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_transform("h", T.HyperlogTransform(10000, 0.1, 3.5, 0))
    strategy.add_transform("h2", T.HyperlogTransform(262144, 0.5, 4.5, 0))

    def dim(channel, ref="h", **bounds):
        return Dimension(channel, transformation_ref=ref, **bounds)

    root = ("root",)
    strategy.add_gate(gates.RectangleGate("High", [dim("FL1-A", "h2", range_min=1.0)]), root)
    strategy.add_gate(gates.PolygonGate("Neg", [dim("FL1-A"), dim("FL2-A")],
                                        [(-1.5, -1.5), (-0.5, -1.5), (-0.5, -0.5), (-1.5, -0.7)]),
                      root)
    strategy.add_gate(gates.EllipsoidGate("Ell", [dim("FL1-A", "h2"), dim("FL2-A", "h2")],
                                          [-1, -1], [[0.1, 0], [0, 0.1]], 1.0), root)
    assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_ellipsoid_with_unsymmetric_covariance(tmp_path):
    data = np.random.default_rng(9).uniform(-3, 3, size=(20_000, 2))
    path = write_fcs(tmp_path / "ell.fcs", data, ["FL1-A", "FL2-A"], datatype="D")
    for cov in ([[1.0, 0.9], [-0.5, 1.0]], [[1.0, 1 - 1e-13], [1 - 1e-13, 1.0]]):
        strategy = fk.GatingStrategy()
        strategy.add_gate(gates.EllipsoidGate("E", [Dimension("FL1-A"), Dimension("FL2-A")],
                                              [0.0, 0.0], cov, 1.0), gate_path=("root",))
        assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_polygon_with_infinite_vertex_on_transformed_axes(tmp_path):
    data = np.random.default_rng(3).uniform(-50, 300, size=(5_000, 2))
    path = write_fcs(tmp_path / "inf.fcs", data, ["FL1-A", "FL2-A"], datatype="D")
    for xform in (T.LogicleTransform(10, 0.5, 4.5, 0), T.AsinhTransform(10, 4, 0)):
        strategy = fk.GatingStrategy()
        strategy.add_transform("t", xform)
        dims = [Dimension("FL1-A", transformation_ref="t"),
                Dimension("FL2-A", transformation_ref="t")]
        strategy.add_gate(gates.PolygonGate(
            "P", dims, [(0.2, 0.2), (np.inf, 0.2), (np.inf, np.inf), (0.2, np.inf)]),
            gate_path=("root",))
        assert_same_as_flowkit(strategy, _sample(path), source=path)


def test_polygon_with_nan_vertex_falls_back_to_flowkit(tmp_path):
    data = np.random.default_rng(4).uniform(-0.5, 1.5, size=(2_000, 2))
    path = write_fcs(tmp_path / "nan.fcs", data, ["X", "Y"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.PolygonGate("P", [Dimension("X"), Dimension("Y")],
                                        [(0, 0), (1, np.nan), (1, 1)]), gate_path=("root",))
    with pytest.warns(engine.EngineFallbackWarning, match="NaN vertex"):
        assert not engine.compile(strategy).compiled
    assert_same_as_flowkit(strategy, _sample(path), source=path, expect_compiled=False)


def test_sample_with_custom_gates_needs_its_own_plan(tmp_path):
    data = np.random.default_rng(5).uniform(0, 10, size=(1_000, 1))
    path = write_fcs(tmp_path / "custom.fcs", data, ["X"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_gate(gates.RectangleGate("G", [Dimension("X", range_min=5.0)]),
                      gate_path=("root",))
    strategy.add_gate(gates.RectangleGate("G", [Dimension("X", range_min=8.0)]),
                      gate_path=("root",), sample_id="custom.fcs")
    with pytest.raises(ValueError, match="custom gates for sample 'custom.fcs'"):
        engine.compile(strategy).counts(path)
    assert_same_as_flowkit(strategy, _sample(path), source=path, sample_id="custom.fcs")


def test_unreadable_widths_are_a_clear_error_or_read_by_flowio(tmp_path):
    """$PnB of '*' (ASCII-style) must not escape as a bare ValueError."""
    from immunoprofile.errors import FCSReadError
    from immunoprofile.io.events import read_events

    data = np.array([[1, 2], [3, 4]], dtype=np.uint16)
    path = write_fcs(tmp_path / "star.fcs", data, ["A", "B"], datatype="I", bits=16,
                     extra={"$P1B": "*"})
    try:
        events = read_events(path)
    except FCSReadError as exc:
        assert "star.fcs" in str(exc)
    else:
        assert events.event_count == 2
