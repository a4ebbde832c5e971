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
:mod:`immunoprofile.stats`, :mod:`immunoprofile.cohort`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import (
    FCSReadError,
    GatingError,
    ImmunoprofileError,
    ManifestError,
    PanelError,
    TemplateError,
)
from .io.fcs import Tube, read_tube
from .io.fcs_reader import FCSData, read_fcs
from .pipeline import BatchResult, gate_batch, gate_sample, write_results
from .report import plot_gates, write_report

try:
    __version__ = version("immunoprofile")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "BatchResult",
    "FCSData",
    "FCSReadError",
    "GatingError",
    "ImmunoprofileError",
    "ManifestError",
    "PanelError",
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
