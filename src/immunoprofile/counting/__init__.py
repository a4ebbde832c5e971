"""Counting: events per gate, absolute counts, the CD4/CD8 ratio and QC — Numba kernels."""

from .absolute import (
    cd4_cd8_ratio,
    dual_platform_cells_per_ul,
    poisson_cv,
    ratio,
    single_platform_cells_per_ul,
)
from .gate_counts import count_gate_events
from .qc import relative_spread

__all__ = [
    "cd4_cd8_ratio",
    "count_gate_events",
    "dual_platform_cells_per_ul",
    "poisson_cv",
    "ratio",
    "relative_spread",
    "single_platform_cells_per_ul",
]
