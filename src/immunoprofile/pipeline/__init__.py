"""The batch, from manifest to tables: gating one tube (:mod:`.tube`), its result file for
the workflow (:mod:`.tube_result`), resuming a stopped batch (:mod:`.resume`), counting
and writing the tables (:mod:`.assemble`), and the batch itself (:mod:`.batch`), which
``immunoprofile.gate_batch`` and the command line's ``gate`` run.

The names of the former module ``immunoprofile.pipeline`` are still found here, for one
release (import them from the modules of this package).
"""

_MODULES = ("batch", "assemble", "tube", "tube_result", "resume")


def __getattr__(name: str):
    import importlib

    if not name.startswith("__"):
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}")
            if hasattr(found, name):
                return getattr(found, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
