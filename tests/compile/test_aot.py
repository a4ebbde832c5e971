"""Kernels compiled ahead of time (immunoprofile._compile.aot) answer as the just-in-time ones do,
and let ``immunoprofile gate`` run without importing Numba, pandas or FlowKit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import flowkit as fk
import numpy as np
import pytest
from conftest import REPO
from support.fcs_writer import write_fcs

from immunoprofile import engine
from immunoprofile._compile import aot as _aot

pytestmark = pytest.mark.slow  # the first builds take a few seconds each

HEAVY = ("numba", "llvmlite", "pandas", "flowkit", "scipy", "matplotlib", "sklearn")


@pytest.fixture
def builds(monkeypatch):
    """Builds allowed in this test (the command line allows them; the API does not)."""
    monkeypatch.setitem(_aot._BUILDS, "allowed", True)
    monkeypatch.setitem(_aot._BUILDS, "notify", None)
    yield


def _plan(path: Path, kernel: str):
    from immunoprofile.gating.panels import detect_panel
    from immunoprofile.gating.templates import channel_map, load_strategy
    from immunoprofile.io.fcs import read_tube

    tube = read_tube(path)
    panel = detect_panel(tube.markers)
    strategy = load_strategy(panel.tube, channel_map(panel, tube.markers, tube.scatter,
                                                     source=path.name))
    return engine.compile(strategy, kernel=kernel), tube


def test_compiled_kernels_equal_the_jit_ones(builds, monkeypatch):
    for name in ("P01_nk.fcs", "P04_cd4.fcs", "P06_cd8.fcs"):
        path = REPO / "sample_data" / name
        plan, _ = _plan(path, "generated")
        aot_counts = plan.counts(path)
        aot_bits = plan.membership(path).bitmask
        monkeypatch.setenv("IMMUNOPROFILE_AOT", "off")
        jit_plan, _ = _plan(path, "generated")
        assert jit_plan.counts(path) == aot_counts
        np.testing.assert_array_equal(jit_plan.membership(path).bitmask, aot_bits)
        monkeypatch.delenv("IMMUNOPROFILE_AOT")
    # a tube whose marked events go to the (compiled) generic kernel
    from test_engine_generated import _odd_events, _odd_strategy

    tmp = Path(_aot.kernel_dir()).parent / "odd"
    tmp.mkdir(exist_ok=True)
    odd = write_fcs(tmp / "odd.fcs", _odd_events(20_000, seed=8),
                    ["FL1-A", "SSC-A", "FL3-A", "FL4-A"], datatype="D")
    strategy = _odd_strategy()
    plan = engine.compile(strategy, kernel="generated")
    aot_bits = plan.membership(odd).bitmask
    assert plan.marked_events > 0
    monkeypatch.setenv("IMMUNOPROFILE_AOT", "off")
    np.testing.assert_array_equal(
        engine.compile(strategy, kernel="generated").membership(odd).bitmask, aot_bits)
    monkeypatch.delenv("IMMUNOPROFILE_AOT")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = {p.name.split("_")[1] for p in _aot.kernel_dir().glob(f"ipk_*{suffix}")}
    assert {"gating", "generic"} <= built


def test_counting_kernels_equal_the_jit_ones(builds):
    from immunoprofile._compile import jit as _numba
    from immunoprofile.counting import absolute, gate_counts, qc

    rng = np.random.default_rng(5)
    pop, beads = rng.integers(0, 5000, 50).astype(float), rng.integers(0, 900, 50).astype(float)
    per_test, volume = np.full(50, 50_000.0), rng.uniform(0, 100, 50)
    for kernel, args in (
            (absolute._single_platform, (pop, beads, per_test, volume)),
            (absolute._dual_platform, (pop, beads, rng.uniform(-1, 300, 50))),
            (absolute._ratio, (pop, beads)), (absolute._poisson_cv, (pop, beads)),
            (gate_counts._count_gate_events,
             (rng.integers(0, 2**20, 400).astype(np.uint32), np.array([0, 150, 400]), 20)),
            (qc._relative_spread, (pop, rng.integers(0, 7, 50), 7))):
        module = _numba._group_module("counting")
        assert module is not None
        compiled = getattr(module, kernel.__name__)(*args)
        np.testing.assert_array_equal(compiled, kernel.jit(*args))


def test_wrong_argument_types_never_reach_compiled_code(builds):
    from immunoprofile.counting import absolute

    spec = absolute._ratio.args
    assert _aot.check_arguments((np.ones(3), np.ones(3)), spec)
    assert not _aot.check_arguments((np.ones(3, dtype=np.float32), np.ones(3)), spec)
    assert not _aot.check_arguments((np.ones(6)[::2], np.ones(3)), spec)
    assert not _aot.check_arguments((np.ones(3).astype(">f8"), np.ones(3)), spec)
    assert not _aot.check_arguments((np.ones((3, 1)), np.ones(3)), spec)
    # the wrapper converts, the kernel falls back: the answer is the same either way
    np.testing.assert_array_equal(absolute._ratio(np.ones(3, dtype=np.float32), np.ones(3)),
                                  np.ones(3))


def test_a_failed_build_is_remembered_and_the_jit_serves(tmp_path, monkeypatch, builds):
    monkeypatch.setenv("IMMUNOPROFILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_aot, "_LOADED", {})

    def broken(name, exports):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(_aot, "_build", broken)
    data = np.random.default_rng(1).uniform(0, 100, size=(2_000, 2))
    path = write_fcs(tmp_path / "t.fcs", data, ["A", "B"], datatype="D")
    strategy = fk.GatingStrategy()
    strategy.add_gate(fk.gates.RectangleGate("G", [fk.Dimension("A", range_min=30.0)]),
                      gate_path=("root",))
    plan = engine.compile(strategy, kernel="generated")
    expected = int((data[:, 0] >= 30.0).sum())
    assert plan.counts(path)[("G", ("root",))] == expected
    (failed,) = _aot.kernel_dir().glob("*.failed")
    assert "no C compiler" in failed.read_text()


def test_gate_runs_without_numba_pandas_or_flowkit(small_cohort, tmp_path):
    """Once its kernels are built, ``immunoprofile gate`` imports none of them."""
    env = {k: v for k, v in os.environ.items() if k != "IMMUNOPROFILE_AOT"}
    first = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate",
                            str(small_cohort), "-o", str(tmp_path / "a")],
                           capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    probe = (
        "import sys\n"
        f"sys.argv = ['immunoprofile', 'gate', {str(small_cohort)!r}, '-q', '-o', "
        f"{str(tmp_path / 'b')!r}]\n"
        "from immunoprofile.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))\n"
        "print(__import__('json').dumps([code, heavy]))\n" % (HEAVY,))
    second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env)
    assert second.returncode == 0, second.stderr
    code, heavy = json.loads(second.stdout.strip().splitlines()[-1])
    assert code in (0, None) and heavy == []
    for table in ("populations", "profiles", "samples", "errors"):
        assert (tmp_path / "a" / f"{table}.csv").read_bytes() == \
            (tmp_path / "b" / f"{table}.csv").read_bytes()


def test_tables_equal_those_of_the_jit_and_flowkit_engines(small_cohort, tmp_path,
                                                          monkeypatch):
    """The command's tables (compiled kernels) equal the API's with just-in-time kernels
    and with FlowKit gating."""
    from immunoprofile import gate_batch

    run = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "gate",
                          str(small_cohort), "-q", "-o", str(tmp_path / "cli")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    monkeypatch.setenv("IMMUNOPROFILE_AOT", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for engine_name in ("compiled", "flowkit"):
            result = gate_batch(small_cohort, engine=engine_name)
            for table in ("populations", "profiles", "samples"):
                assert result.tables[table].to_csv() == \
                    (tmp_path / "cli" / f"{table}.csv").read_text(), (engine_name, table)
