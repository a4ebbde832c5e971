"""Kernels generated per strategy (:mod:`.codegen`): written to disk, compiled, run.

A generated module is a plain ``.py`` file in the kernel cache (``kernels/`` beside the
stored programs), named by a digest of its source and of the versions it was built with,
so Numba's own on-disk cache (``cache=True``) keeps its machine code between runs like any
other kernel of the package. The file is written atomically; a damaged or foreign one is
rewritten.

Running one is :func:`run_generated`: blocks are spread over threads for large tubes (the
kernels release the GIL), and the events the generated kernel marks are gated again by the
generic kernel (:mod:`.kernel`), whose answers replace the fast ones.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np

from ..io.atomic import atomic_write_text
from . import codegen
from .compiler import Bound, Program

_MODULES: dict[str, ModuleType] = {}
_LOCK = threading.Lock()

#: Below this many events per thread a tube is not split over threads.
EVENTS_PER_THREAD = 200_000


def kernel_dir() -> Path:
    """Where generated kernels are kept: ``$IMMUNOPROFILE_CACHE/kernels``, else the user
    cache (``~/.cache/immunoprofile/kernels``)."""
    env = os.environ.get("IMMUNOPROFILE_CACHE")
    if env:
        return Path(env) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "immunoprofile" / "kernels"


def _versions() -> tuple[str, ...]:
    import numba

    from .. import __version__
    return (__version__, numba.__version__, np.__version__, _kernel_digest())


_DIGEST: list[str] = []


def _kernel_digest() -> str:
    """Digest of the code generated modules call (a change there must not reuse a build)."""
    if not _DIGEST:
        import hashlib

        here = Path(__file__).parent
        text = b"".join((here / name).read_bytes() for name in ("kernel.py", "codegen.py"))
        _DIGEST.append(hashlib.sha256(text).hexdigest()[:16])
    return _DIGEST[0]


def _path(source: str) -> tuple[str, Path]:
    key = codegen.source_key(source, *_versions())
    return key, kernel_dir() / f"{key}.py"


def source_for(program: Program, bound: Bound) -> str | None:
    """The generated module's source for this binding, or None: the generic kernel gates
    it (see :func:`.codegen.supported`; or the tube's compensation weights are not all
    finite)."""
    if codegen.supported(program) is not None:
        return None
    layout = codegen.layout_of(bound, program)
    return None if layout is None else codegen.kernel_source(program, layout)


def is_built(source: str) -> bool:
    """Whether this generated module was written before (in this process or an earlier
    run, so Numba has most likely cached its machine code)."""
    key, path = _path(source)
    return key in _MODULES or path.exists()


def load_module(source: str) -> ModuleType:
    """Import the generated module with this source (writing it first if needed)."""
    key, path = _path(source)
    with _LOCK:
        module = _MODULES.get(key)
        if module is not None:
            return module
        folder = path.parent
        try:
            current = path.read_text(encoding="utf-8") if path.exists() else None
        except OSError:
            current = None
        if current != source:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, source)
        name = f"immunoprofile_generated_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _MODULES[key] = module
        return module


def run_generated(module: ModuleType, data: np.ndarray, n: int, bound: Bound,
                  bits: np.ndarray | None, threads: int) -> tuple[np.ndarray, int]:
    """Counts per gate of ``n`` events, exact, filling ``bits`` when given.

    Parameters
    ----------
    module : module
        From :func:`load_module`.
    data : numpy.ndarray
        (events, channels) in the tube's stored type.
    n : int
        Events, events.
    bound : Bound
        The tube's binding (:func:`.compiler.bind`).
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
    from .kernel import gate_blocks_serial

    cols, mask, scale, decades, log0, value_range, gain = bound.args[:7]
    coef_w, val_ratio = bound.args[13], bound.args[14]
    marked = np.empty(n, dtype=np.int64)  # pages are touched only where written
    n_blocks = (n + codegen.BLOCK - 1) // codegen.BLOCK
    chunks = max(1, min(threads, n // EVENTS_PER_THREAD, n_blocks))
    edges = [n_blocks * i // chunks for i in range(chunks + 1)]

    def chunk(i: int) -> np.ndarray:
        args = (data, n, edges[i], edges[i + 1], cols, mask, scale, decades, log0,
                value_range, gain, coef_w, val_ratio, marked)
        if bits is None:
            return module.gate_counts(*args)
        return module.gate_bits(*args, bits)

    if chunks == 1:
        parts = [chunk(0)]
    else:
        with ThreadPoolExecutor(max_workers=chunks) as pool:
            parts = list(pool.map(chunk, range(chunks)))
    counts = np.sum([p[:-1] for p in parts], axis=0)
    index = np.concatenate([marked[edges[i] * codegen.BLOCK:][:int(p[-1])]
                            for i, p in enumerate(parts)])
    if index.size:
        # The marked events, gated by the generic kernel: their stored values converted
        # to float64 (exact for every FCS data type) decode as the originals do.
        rows = np.ascontiguousarray(data[index], dtype=np.float64)
        words = np.zeros((bits.shape[0], index.size) if bits is not None else (0, 0),
                         dtype=np.uint64)
        counts = counts + gate_blocks_serial(rows, index.size, *bound.args, words)
        if bits is not None:
            bits[:, index] = words
    return counts, int(index.size)

