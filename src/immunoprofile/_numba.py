"""The one place where Numba options are set.

``cache=True`` so that compiled kernels are reused across processes and runs; the fastmath
set deliberately leaves out ``nnan`` and ``ninf``: empty populations make 0/0 and those NaNs
must survive to the output, not be optimised away.
"""

from __future__ import annotations

import numba

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: Options for every serial kernel.
KERNEL_OPTIONS = {"cache": True, "nogil": True, "fastmath": FASTMATH}


def kernel(func):
    """Compile ``func`` as an immunoprofile kernel (``njit`` with the project's options)."""
    return numba.njit(**KERNEL_OPTIONS)(func)
