"""A compiled gating plan: the public face of the engine."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from .._compile import aot as _aot
from ..io.events import EventData, read_events
from . import codegen, generated
from .bind import Bound, bind
from .lower import lower
from .program import GateKey, Program, Unsupported

#: Below this many events a tube is gated on one thread (threads cost more than they save).
PARALLEL_MIN_EVENTS = 200_000

#: Kernels a plan can run: the strategy's own generated kernel (:mod:`.codegen`), the
#: generic kernel (:mod:`.kernel`), or "auto": the generated one where it exists, where
#: kernels are being built ahead of time (the command line), or for a tube of at least
#: :data:`GENERATED_MIN_EVENTS` events; else the generic one.
KERNELS = ("auto", "generated", "generic")

#: Under "auto", a layout whose tubes the generated kernel leaves more than this share of
#: events marked is gated by the generic kernel alone from then on (both give the same
#: answers; marking most events only adds work).
MARKED_SHARE = 0.25

#: Tubes this large pay for compiling a strategy's generated kernel on first use (about a
#: second, once per machine: Numba caches it); in an open session smaller ones use the
#: generic kernel until the generated one exists.
GENERATED_MIN_EVENTS = 100_000


def default_threads() -> int:
    """Threads a large tube is spread over by default: ``$NUMBA_NUM_THREADS``, else one per
    CPU (Numba's own default)."""
    try:
        return max(1, int(os.environ.get("NUMBA_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


class EngineFallbackWarning(UserWarning):
    """A strategy could not be compiled; FlowKit gates it instead."""


class GateMembership(Mapping):
    """Per-gate event membership, keyed as FlowKit keys gates: ``(gate_name, gate_path)``.

    Each value is a boolean array, one value per event, already ANDed with the gate's
    parents (FlowKit's ``GatingResults.get_gate_membership``).
    """

    def __init__(self, keys: list[GateKey], bits: np.ndarray, counts=None):
        self._keys = keys
        self._bits = bits  # (words, events) uint64
        self._counts = counts  # events per gate, as the kernel counted them (or None)

    def __getitem__(self, key: GateKey) -> np.ndarray:
        g = self._keys.index((key[0], tuple(key[1])))
        word = self._bits[g // 64]
        return (word >> np.uint64(g % 64)) & np.uint64(1) == np.uint64(1)

    def __iter__(self) -> Iterator[GateKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def get_gate_membership(self, gate_name: str, gate_path=None) -> np.ndarray:
        """Membership of one gate; ``gate_path`` is needed only when the name repeats."""
        matches = [k for k in self._keys if k[0] == gate_name
                   and (gate_path is None or k[1] == tuple(gate_path))]
        if len(matches) != 1:
            raise KeyError(f"gate {gate_name!r} matches {len(matches)} gates; give its path")
        return self[matches[0]]

    @property
    def bitmask(self) -> np.ndarray:
        """Packed membership: uint64 (ceil(gates / 64), events); bit ``g % 64`` of word
        ``g // 64`` is gate ``g`` in :attr:`GatingPlan.gate_ids` order."""
        return self._bits

    @property
    def counts(self) -> dict[GateKey, int]:
        """Events in every gate, as :meth:`GatingPlan.counts` gives them (the kernel counts
        them as it writes the memberships: nothing is counted again)."""
        if self._counts is None:
            self._counts = [int(np.count_nonzero(self[key])) for key in self._keys]
        return {key: int(c) for key, c in zip(self._keys, self._counts, strict=True)}


def pack_memberships(members: Sequence[np.ndarray], events: int) -> np.ndarray:
    """Per-gate boolean memberships packed as :attr:`GateMembership.bitmask` lays them out.

    Parameters
    ----------
    members : sequence of numpy.ndarray
        One bool array per gate, ``events`` long.
    events : int
        Events in the tube.

    Returns
    -------
    numpy.ndarray
        uint64, (ceil(gates / 64), events).
    """
    bits = np.zeros(((len(members) + 63) // 64, events), dtype=np.uint64)
    for g, member in enumerate(members):
        bits[g // 64] |= np.asarray(member, dtype=bool).astype(np.uint64) << np.uint64(g % 64)
    return bits


class GatingPlan:
    """A gating strategy compiled for the Numba kernels (see :func:`compile`).

    Attributes
    ----------
    gate_ids : list of (str, tuple of str)
        Gates in evaluation order, named as FlowKit names them.
    gate_types : list of str
        FlowKit's gate type per gate.
    compiled : bool
        False when the strategy fell back to FlowKit (:attr:`fallback_reason` says why).
    kernel : {"auto", "generated", "generic"}
        Which kernel gates (see :data:`KERNELS`); every kernel gives the same membership.
    marked_events : int
        Events of the last tube that the generated kernel left to the generic one
        (within a hair of a sloped edge on a transformed axis, or NaN, infinite or huge);
        a diagnostic: when threads share a plan, the last tube of any of them.
    """

    def __init__(self, strategy, sample_id: str | None = None, *,
                 program: Program | None = None, kernel: str = "auto"):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; use one of {', '.join(KERNELS)}")
        self.strategy = strategy
        self.sample_id = sample_id
        self.kernel = kernel
        self.fallback_reason: str | None = None
        self._program: Program | None = program
        self._bound: dict[tuple, Bound] = {}
        self._generated: dict[tuple, object] = {}
        self._sources: dict[tuple, str | None] = {}
        self._given_up: set[tuple] = set()
        self.marked_events = 0
        self._checked: set[str] = set()
        self._flowkit_lock = threading.Lock()  # a FlowKit strategy caches per sample
        if program is None:
            try:
                self._program = lower(strategy, sample_id)
            except Unsupported as exc:
                self.fallback_reason = str(exc)
                warnings.warn(
                    f"immunoprofile engine: {exc}; this strategy is gated with FlowKit instead",
                    EngineFallbackWarning, stacklevel=3)
        if self._program is not None:
            self.gate_ids = [g.key for g in self._program.gates]
            self.gate_types = [g.gate_type for g in self._program.gates]
        else:
            self.gate_ids, self.gate_types = _flowkit_gate_ids(strategy, sample_id)

    @classmethod
    def from_program(cls, program: Program, kernel: str = "auto") -> GatingPlan:
        """A plan from a program lowered earlier (see :mod:`.program_store`)."""
        return cls(None, program=program, kernel=kernel)

    @property
    def program(self) -> Program | None:
        """The lowered program (None when FlowKit gates this strategy)."""
        return self._program

    @property
    def compiled(self) -> bool:
        """Whether the Numba kernel gates this strategy."""
        return self._program is not None

    def _events(self, sample) -> EventData:
        if isinstance(sample, EventData):
            events = sample
        elif isinstance(sample, str | os.PathLike):
            events = read_events(Path(sample))
        else:
            events = EventData.from_sample(sample)  # a FlowKit Sample
        self._check_custom_gates(events.name)
        return events

    def _check_custom_gates(self, sample_id: str) -> None:
        """Refuse a sample that has its own gates in the strategy but was not compiled so.

        FlowKit would gate it with its custom (e.g. FlowJo sample-specific) gates; a plan
        compiled for the template gates would silently count something else.
        """
        if self.strategy is None or sample_id == self.sample_id or sample_id in self._checked:
            return
        has_custom = False
        for name, path in self.strategy.get_gate_ids():
            try:
                has_custom = has_custom or self.strategy.is_custom_gate(sample_id, name, path)
            except Exception:  # quadrants are not gate nodes of their own
                continue
        if not has_custom:
            self._checked.add(sample_id)
            return
        raise ValueError(
            f"the strategy has custom gates for sample {sample_id!r}: compile it with "
            f"engine.compile(strategy, sample_id={sample_id!r})")

    def _run(self, sample, want_bits: bool, threads: int | None):
        events = self._events(sample)
        layout = (events.data.dtype.str, events.data.flags.c_contiguous,
                  tuple(events.pnn), tuple(events.pns), events.spill,
                  tuple(events.fluoro_indices), tuple(events.null_channels),
                  events.mask.tobytes(), events.scale.tobytes(), events.decades.tobytes(),
                  events.log0.tobytes(), events.value_range.tobytes(), events.gain.tobytes())
        bound = self._bound.get(layout)
        if bound is None:
            bound = bind(self._program, events)
            self._bound[layout] = bound
        n = events.event_count
        n_words = (bound.n_gates + 63) // 64 if want_bits else 0
        data = events.data
        if data.ndim != 2 or n == 0:
            data = np.zeros((max(n, 0), max(len(events.pnn), 1)), dtype=np.float64)
        use_threads = threads if threads is not None else default_threads()
        kernel = self._generated_kernel(layout, bound, data, n)
        if kernel is not None:
            bits = np.empty((n_words, n), dtype=np.uint64) if want_bits else None
            counts, self.marked_events = generated.run_generated(kernel, data, n, bound, bits,
                                                                 use_threads)
            if self.kernel == "auto" and self.marked_events > MARKED_SHARE * n:
                # slabs this wide (long sloped edges on a transformed axis) leave most of
                # the work to the generic kernel anyway: use it alone for this layout
                self._given_up.add(layout)
            return counts, bits if bits is not None else np.zeros((0, 0), dtype=np.uint64)
        bits = np.empty((n_words, n if want_bits else 0), dtype=np.uint64)
        self.marked_events = 0
        if use_threads <= 1 or n < PARALLEL_MIN_EVENTS:
            # serial: the kernel compiled ahead of time where it is built (no Numba
            # import). Not cached on ``bound``: that choice is for float64 marked rows.
            args = (data, n) + bound.args.flat() + (bits,)
            return generated.generic_kernel(args)(*args), bits
        import numba  # the parallel generic kernel is compiled by Numba just in time

        from .kernel import gate_blocks_parallel

        previous = numba.get_num_threads()
        numba.set_num_threads(min(use_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            counts = gate_blocks_parallel(data, n, *bound.args.flat(), bits)
        finally:
            numba.set_num_threads(previous)
        return counts, bits

    def _generated_kernel(self, layout: tuple, bound: Bound, data: np.ndarray, n: int):
        """The strategy's generated kernel for this layout, or None for the generic one."""
        if self.kernel == "generic":
            return None
        if self.kernel == "auto" and layout in self._given_up:  # see MARKED_SHARE
            return None
        kernel = self._generated.get(layout)
        if kernel is not None:
            return kernel
        if layout not in self._sources:
            self._sources[layout] = generated.source_for(self._program, bound, data)
        source = self._sources[layout]
        if source is None:
            reason = codegen.supported(self._program)
            if self.kernel == "generated" and reason is not None:
                raise ValueError(f"this strategy has no generated kernel: {reason}")
            return None  # (or the tube's compensation weights are not all finite)
        if self.kernel == "auto" and n < GENERATED_MIN_EVENTS \
                and not generated.is_built(source) and not _aot.builds_allowed():
            return None
        kernel = self._generated[layout] = generated.GeneratedKernel(source)
        return kernel

    def counts(self, sample, threads: int | None = None) -> dict[GateKey, int]:
        """Events in every gate (parent-ANDed).

        Parameters
        ----------
        sample : flowkit.Sample, EventData, str or Path
            The tube; a path is read with :func:`read_events` (memory-mapped).
        threads : int, optional
            Threads for large tubes (default: :func:`default_threads`).

        Returns
        -------
        dict
            ``{(gate_name, gate_path): events}``.
        """
        if not self.compiled:
            results = self._flowkit(sample)
            return {key: int(np.sum(_flowkit_membership(results, key)))
                    for key in self.gate_ids}
        counts, _ = self._run(sample, False, threads)
        return {key: int(c) for key, c in zip(self.gate_ids, counts, strict=True)}

    def membership(self, sample, threads: int | None = None) -> GateMembership:
        """Per-gate boolean membership of every event (see :class:`GateMembership`)."""
        if not self.compiled:
            results = self._flowkit(sample)
            members = [np.asarray(_flowkit_membership(results, key), dtype=bool)
                       for key in self.gate_ids]
            bits = pack_memberships(members, members[0].size if members else 0)
            return GateMembership(self.gate_ids, bits,
                                  [int(np.count_nonzero(m)) for m in members])
        counts, bits = self._run(sample, True, threads)
        return GateMembership(self.gate_ids, bits, counts)

    def _flowkit(self, sample):
        import flowkit as fk

        if isinstance(sample, EventData):
            raise TypeError("a strategy FlowKit gates needs a flowkit.Sample or a path")
        if isinstance(sample, str | os.PathLike):
            sample = fk.Sample(str(sample))
        with self._flowkit_lock:  # gate_sample and clear_cache share the strategy's cache
            try:
                return self.strategy.gate_sample(sample)
            finally:
                self.strategy.clear_cache()


def _flowkit_gate_ids(strategy, sample_id) -> tuple[list[GateKey], list[str]]:
    from flowkit.exceptions import QuadrantReferenceError

    keys, types = [], []
    for name, path in strategy.get_gate_ids():
        try:
            gate = strategy.get_gate(name, path, sample_id=sample_id)
            if gate.gate_type == "QuadrantGate":
                continue
            types.append(gate.gate_type)
        except QuadrantReferenceError:
            types.append("QuadrantGate")
        keys.append((name, tuple(path)))
    return keys, types


def _flowkit_membership(results, key: GateKey) -> np.ndarray:
    name, path = key
    try:
        return results.get_gate_membership(name, gate_path=path)
    except Exception:  # quadrants are filed under their gate's path
        return results.get_gate_membership(name, gate_path=path[:-1])


def compile(strategy, sample_id: str | None = None,
            kernel: str = "auto") -> GatingPlan:
    """Compile a FlowKit ``GatingStrategy`` for the Numba kernels.

    Parameters
    ----------
    strategy : flowkit.GatingStrategy
        From Gating-ML (``flowkit.parse_gating_xml``), a FlowJo workspace
        (``flowkit.Workspace.get_gating_strategy``) or built in code.
    sample_id : str, optional
        Use this sample's custom gates where the strategy has them (workspaces).
    kernel : {"auto", "generated", "generic"}
        The kernel that gates (:data:`KERNELS`): all give the same membership.

    Returns
    -------
    GatingPlan
        Falls back to FlowKit, with one :class:`EngineFallbackWarning`, when the strategy
        holds something the engine does not compile.
    """
    return GatingPlan(strategy, sample_id, kernel=kernel)
