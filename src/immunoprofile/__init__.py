"""immunoprofile: flow-cytometry immune profiling for CLL.

FCS tubes in (NK, CD4 and CD8 panels with counting beads), gated with FlowKit from
Gating-ML templates, counted in Numba kernels: NK, CD4+ T and CD8+ T cells per µL and the
CD4/CD8 ratio, with laboratory QC flags.

The notebook API::

    import immunoprofile as ip
    result = ip.gate_batch("sample_data/")      # populations, profiles, errors, samples
    result.profiles
    ip.gate_sample("sample_data/P01_nk.fcs")    # one tube's populations
    ip.plot_gates("sample_data/P01_nk.fcs")     # each gate's plot (PNG bytes and numbers)
    ip.write_report("results/")                 # results/report.html

TFR risk and the study's statistics: :mod:`immunoprofile.predict`,
:mod:`immunoprofile.study`. How the package is layered: ``docs/architecture.md``.
"""

from __future__ import annotations

from ._moved import install_moved_module_aliases
from ._version import __version__
from .errors import (
    CohortError,
    FCSReadError,
    GatingError,
    ImmunoprofileError,
    ManifestError,
    ModelError,
    OutputLockedError,
    PanelError,
    StatsError,
    TemplateError,
)

install_moved_module_aliases()

#: Public names and the modules that define them, imported on first use (PEP 562): the
#: command line imports only what a command needs, so ``immunoprofile gate`` starts
#: without pandas, Numba, FlowKit or matplotlib.
_LAZY = {
    "Tube": ".io.fcs", "read_tube": ".io.fcs",
    "FCSData": ".io.fcs_reader", "read_fcs": ".io.fcs_reader",
    "BatchResult": ".pipeline.assemble", "gate_batch": ".pipeline.batch",
    "gate_sample": ".pipeline.batch", "write_results": ".pipeline.assemble",
    "plot_gates": ".report", "write_report": ".report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BatchResult",
    "CohortError",
    "FCSData",
    "FCSReadError",
    "GatingError",
    "ImmunoprofileError",
    "ManifestError",
    "ModelError",
    "OutputLockedError",
    "PanelError",
    "StatsError",
    "TemplateError",
    "Tube",
    "__version__",
    "gate_batch",
    "gate_sample",
    "plot_gates",
    "read_fcs",
    "read_tube",
    "write_report",
    "write_results",
]
