"""The one place where Numba options are set, and where kernels are compiled.

``cache=True`` so that compiled kernels are reused across processes and runs; the fastmath
set deliberately leaves out ``nnan`` and ``ninf``: empty populations make 0/0 and those NaNs
must survive to the output, not be optimised away.

A :func:`kernel` declares its argument and result types. Where its group's ahead-of-time
build exists (:mod:`immunoprofile._compile.aot`; the command line builds it), that runs; otherwise
Numba compiles the same function just in time, with the same options. Numba is imported
only then, or to build.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np

from . import aot as _aot

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Options for every serial kernel.
KERNEL_OPTIONS = {"cache": True, "nogil": True, "fastmath": FASTMATH}

#: Options of the gating engine's kernels (``numba.njit(**EXACT_OPTIONS)``, and the
#: kernels :mod:`immunoprofile.engine.codegen` writes): no fastmath at all, since an event
#: on a gate's edge must fall on the side FlowKit puts it, so every value must round as
#: NumPy rounds it; NumPy's error model, so 0/0 is NaN (which fails every test), not an
#: exception.
EXACT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def njit_source(**extra) -> str:
    """``EXACT_OPTIONS`` (and ``extra``) as the decorator line of generated source."""
    options = {**EXACT_OPTIONS, **extra}
    return "@numba.njit(" + ", ".join(
        f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}" for k, v in options.items()) + ")"

_GROUPS: dict[str, list[Kernel]] = {}
_LOCK = threading.Lock()


def _dtype(code: str) -> np.dtype | None:
    return None if code == "int" else np.dtype(code)


class Kernel:
    """A Numba kernel with fixed argument types: ahead of time where built, else just in
    time (see the module docstring). Call it like the function it wraps."""

    def __init__(self, func: Callable, args: Sequence[tuple[str, int]],
                 returns: tuple[str, int], group: str):
        self.py_func = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__
        self.group = group
        self.args = tuple((_dtype(code), ndim, True) for code, ndim in args)
        self.returns = (_dtype(returns[0]), returns[1], False)
        self._jit = None

    @property
    def jit(self):
        """The just-in-time compiled kernel (imports Numba)."""
        if self._jit is None:
            import numba

            self._jit = numba.njit(**KERNEL_OPTIONS)(self.py_func)
        return self._jit

    def digest(self) -> str:
        code = self.py_func.__code__
        text = repr((code.co_code, code.co_consts, code.co_names, self.args, self.returns))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, *args):
        module = _group_module(self.group)
        if module is not None and _aot.check_arguments(args, self.args):
            return getattr(module, self.__name__)(*args)
        return self.jit(*args)


_MODULES: dict[str, object] = {}


def _group_module(group: str):
    """The ahead-of-time build of every kernel of ``group`` (None: use the JIT)."""
    if not _aot.enabled():
        return None
    key = (group, _aot.builds_allowed())  # a module missing earlier may be built now
    if key in _MODULES:
        return _MODULES[key]
    with _LOCK:
        kernels = sorted(_GROUPS.get(group, []), key=lambda k: k.__name__)
        options = repr(sorted((k, sorted(v) if isinstance(v, set) else v)
                              for k, v in KERNEL_OPTIONS.items()))
        name = _aot.module_name(group, options, *(k.__name__ + k.digest() for k in kernels))

        def exports():
            return [(k.__name__, _aot.forwarder(k.jit, len(k.args)),
                     _aot.signature(k.returns, k.args)) for k in kernels]

        module = _aot.load_or_build(name, exports, f"the {group} kernels")
        _MODULES[key] = module
        return module


def kernel(*, args: Sequence[tuple[str, int]], returns: tuple[str, int],
           group: str = "counting") -> Callable[[Callable], Kernel]:
    """Declare ``func`` an immunoprofile kernel (``njit`` with the project's options).

    Parameters
    ----------
    args : sequence of (str, int)
        Per argument, the NumPy dtype (``"f8"``, ``"i8"``, ``"u4"``…; ``"int"`` for a
        Python int) and dimensions; arrays are C-contiguous and only read.
    returns : (str, int)
        The returned array's dtype and dimensions.
    group : str
        Kernels of a group are built ahead of time together, in one module.
    """
    def wrap(func: Callable) -> Kernel:
        compiled = Kernel(func, args, returns, group)
        _GROUPS.setdefault(group, []).append(compiled)
        for key in [k for k in _MODULES if k[0] == group]:
            del _MODULES[key]
        return compiled

    return wrap
