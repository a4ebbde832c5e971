"""The batch, from manifest to tables: gating one tube (:mod:`.tube`), its result file for
the workflow (:mod:`.tube_result`), resuming a stopped batch (:mod:`.resume`), counting
and writing the tables (:mod:`.assemble`), and the batch itself (:mod:`.batch`), which
``immunoprofile.gate_batch`` and the command line's ``gate`` run.

The names of the former module ``immunoprofile.pipeline`` are still found here, for one
release (import them from the modules of this package).
"""

from .._moved import forwarding_getattr

__getattr__ = forwarding_getattr(__name__, ("batch", "assemble", "tube", "tube_result", "resume"),
                                 deprecated=True)
