"""Pictures and the HTML report: gating plots per tube, the batch report."""

from .gating_plots import GatePlot, plot_gates, write_gate_plots
from .html import REFERENCE_RANGES, build_report, write_report

__all__ = ["REFERENCE_RANGES", "GatePlot", "build_report", "plot_gates", "write_gate_plots",
           "write_report"]
