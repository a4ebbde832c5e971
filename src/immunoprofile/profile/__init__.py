"""A patient's immune profile: its columns, once (:mod:`.columns`: names, labels, units,
reference intervals), and the tables (populations, samples, profiles) built from counted
tubes (:mod:`.tables`).

The names of the former module ``immunoprofile.profile`` are still found here, for one
release (import them from the modules of this package).
"""

from .._moved import forwarding_getattr

__getattr__ = forwarding_getattr(__name__, ("tables", "columns"),
                                 deprecated=True)
