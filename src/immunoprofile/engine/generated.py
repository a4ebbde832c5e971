"""Kernels generated per strategy (:mod:`.codegen`): written to disk, compiled, run.

A generated module is a plain ``.py`` file in the kernel cache (``kernels/``, see
:func:`immunoprofile._compile.aot.kernel_dir`), named by a digest of its source and of the code it
calls, so Numba's own on-disk cache (``cache=True``) keeps its machine code between runs
like any other kernel of the package. The file is written atomically; a damaged or foreign
one is rewritten. Where an ahead-of-time build of it exists (:mod:`immunoprofile._compile.aot`:
the command line builds them), that runs instead, without importing Numba; so does the
generic kernel that settles the events the generated one marks.

Running one is :func:`run_generated`: blocks are spread over threads for large tubes (the
kernels release the GIL), and the events the generated kernel marks are gated again by the
generic kernel (:mod:`.kernel`), whose answers replace the fast ones.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np

from .._compile import aot as _aot
from ..io.atomic import atomic_write_text
from . import codegen
from .bind import Bound
from .program import Program

_MODULES: dict[str, ModuleType] = {}
_LOCK = threading.Lock()

#: Below this many events per thread a tube is not split over threads.
EVENTS_PER_THREAD = 200_000

_INT64 = (np.dtype(np.int64), 1, False)


def kernel_dir() -> Path:
    """Where generated kernels are kept (see :func:`immunoprofile._compile.aot.kernel_dir`)."""
    return _aot.kernel_dir()


_DIGEST: list[str] = []


def kernel_digest() -> str:
    """Digest of the code generated modules are written by and call (a change there must
    not reuse a module written or built before)."""
    if not _DIGEST:
        here = Path(__file__).parent
        names = ("kernel.py", "codegen.py", "opcodes.py", "transform_kernels.py",
                 "transforms.py", "../io/events.py", "../_compile/jit.py")
        text = b"".join((here / name).read_bytes() for name in names)
        _DIGEST.append(hashlib.sha256(text).hexdigest()[:16])
    return _DIGEST[0]


def _path(source: str) -> tuple[str, Path]:
    from .._version import __version__

    key = codegen.source_key(source, __version__, kernel_digest())
    return key, kernel_dir() / f"{key}.py"


def pairable(data: np.ndarray) -> bool:
    """Whether adjacent channels of ``data`` can be read in 8-byte pairs."""
    return (data.ndim == 2 and data.dtype.itemsize == 4 and data.flags.c_contiguous
            and data.dtype.isnative and sys.byteorder == "little")


def source_for(program: Program, bound: Bound, data: np.ndarray | None = None) -> str | None:
    """The generated module's source for this binding (and data layout), or None: the
    generic kernel gates it (see :func:`.codegen.supported`; or the tube's compensation
    weights are not all finite)."""
    if codegen.supported(program) is not None:
        return None
    layout = codegen.layout_of(bound, program, data is not None and pairable(data))
    return None if layout is None else codegen.kernel_source(program, layout)


def is_built(source: str) -> bool:
    """Whether this generated module was written before (in this process or an earlier
    run, so Numba has most likely cached its machine code)."""
    key, path = _path(source)
    return key in _MODULES or path.exists()


def load_module(source: str) -> ModuleType:
    """Import the generated module with this source (writing it first if needed); its
    kernels are Numba's, compiled just in time."""
    key, path = _path(source)
    with _LOCK:
        module = _MODULES.get(key)
        if module is not None:
            return module
        try:
            current = path.read_text(encoding="utf-8") if path.exists() else None
        except OSError:
            current = None
        if current != source:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, source)
            except OSError:  # the kernel cache cannot be written: a folder of this run's
                path = _scratch() / path.name
                atomic_write_text(path, source)
        name = f"immunoprofile_generated_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _MODULES[key] = module
        return module


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """A temporary folder for generated modules when the kernel cache is not writable."""
    if not _SCRATCH:
        import tempfile

        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="immunoprofile-kernels-")))
    return _SCRATCH[0]


class GeneratedKernel:
    """A strategy's generated kernels for one layout: ahead-of-time builds where there are
    (or may be made), Numba's just-in-time ones otherwise."""

    def __init__(self, source: str):
        self.source = source
        self.pairs = codegen.reads_pairs(source)
        self._functions: dict[tuple, object] = {}

    def function(self, name: str, args: tuple, outputs: tuple[int, ...]):
        """``gate_counts`` or ``gate_bits`` for these arguments' types."""
        key = (name, _aot.argument_spec(args, outputs), _aot.enabled(), _aot.builds_allowed())
        function = self._functions.get(key)
        if function is None:
            if key[1] is not None:
                function = _aot.compiled(
                    "gating", (self.source, kernel_digest(), name),
                    lambda: getattr(load_module(self.source), name), args, outputs, _INT64,
                    "a strategy's gating kernel")
            if function is None:
                function = getattr(load_module(self.source), name)
            self._functions[key] = function
        return function


_GENERIC: dict[tuple, object] = {}


def generic_kernel(args: tuple, bound: Bound | None = None):
    """The generic kernel (serial) for these arguments: ahead of time where built.

    With ``bound``, the choice is kept on it: its arrays' types do not change, and the
    marked rows and words are always float64 and uint64 (saves checking 70 arguments
    per tube).
    """
    state = (_aot.enabled(), _aot.builds_allowed())
    cached = bound.generic_kernel if bound is not None else None
    if cached is not None and cached[0] == state:
        return cached[1]
    key = (_aot.argument_spec(args, (len(args) - 1,)),) + state
    function = _GENERIC.get(key)
    if function is None:
        function = _aot.compiled(
            "generic", (kernel_digest(),), _jit_generic, args, (len(args) - 1,), _INT64,
            "the generic gating kernel") or _jit_generic()
        _GENERIC[key] = function
    if bound is not None:
        bound.generic_kernel = (state, function)
    return function


def _jit_generic():
    from .kernel import gate_blocks_serial

    return gate_blocks_serial


def run_generated(kernel: GeneratedKernel, data: np.ndarray, n: int, bound: Bound,
                  bits: np.ndarray | None, threads: int) -> tuple[np.ndarray, int]:
    """Counts per gate of ``n`` events, exact, filling ``bits`` when given.

    Parameters
    ----------
    kernel : GeneratedKernel
        The strategy's generated kernels for this layout.
    data : numpy.ndarray
        (events, channels) in the tube's stored type.
    n : int
        Events, events.
    bound : Bound
        The tube's binding (:func:`.bind.bind`).
    bits : numpy.ndarray or None
        uint64 (words, events) membership words to fill, or None for counts only.
    threads : int
        Threads for a large tube (at most one per :data:`EVENTS_PER_THREAD` events).

    Returns
    -------
    counts : numpy.ndarray
        int64, events in each gate.
    marked : int
        Events the generated kernel left to the generic one, events.
    """
    t = bound.args.tube
    marked = np.empty(n, dtype=np.int64)  # pages are touched only where written
    n_blocks = (n + codegen.BLOCK - 1) // codegen.BLOCK
    chunks = max(1, min(threads, n // EVENTS_PER_THREAD, n_blocks))
    edges = [n_blocks * i // chunks for i in range(chunks + 1)]
    words = codegen.pair_words(data) if kernel.pairs else np.zeros((1, 1), dtype=np.uint64)
    common = (t.chan_col, t.chan_mask, t.chan_scale, t.chan_decades, t.chan_log0,
              t.chan_range, t.chan_gain, t.coef_w, t.val_ratio, marked)
    sample = (data, words, n, 0, 1) + common + ((bits,) if bits is not None else ())
    function = kernel.function("gate_counts" if bits is None else "gate_bits", sample,
                               (14, 15) if bits is not None else (14,))

    def chunk(i: int) -> np.ndarray:
        args = (data, words, n, edges[i], edges[i + 1]) + common
        return function(*args) if bits is None else function(*args, bits)

    if chunks == 1:
        parts = [chunk(0)]
    else:
        with ThreadPoolExecutor(max_workers=chunks) as pool:
            parts = list(pool.map(chunk, range(chunks)))
    counts = parts[0][:-1] if chunks == 1 else np.sum([p[:-1] for p in parts], axis=0)
    index = np.concatenate([marked[edges[i] * codegen.BLOCK:][:int(p[-1])]
                            for i, p in enumerate(parts)])
    if index.size:
        # The marked events, gated by the generic kernel: their stored values converted
        # to float64 (exact for every FCS data type) decode as the originals do.
        rows = np.ascontiguousarray(data[index], dtype=np.float64)
        words = np.zeros((bits.shape[0], index.size) if bits is not None else (0, 0),
                         dtype=np.uint64)
        args = (rows, int(index.size)) + bound.args.flat() + (words,)
        counts = counts + generic_kernel(args, bound)(*args)
        if bits is not None:
            bits[:, index] = words
    return counts, int(index.size)
