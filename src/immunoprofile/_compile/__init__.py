"""Foundations for kernels: the one place for Numba options (:mod:`.jit`) and the
ahead-of-time builds of kernels (:mod:`.aot`). Imports nothing of the package above it."""
