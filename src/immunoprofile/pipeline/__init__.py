"""The batch: manifest → read → gate → count → tables, with resume and per-tube results
(:mod:`.batch`). ``immunoprofile.gate_batch`` and the command line's ``gate`` run it.

The names of the former module ``immunoprofile.pipeline`` are still found here, for one
release (import them from the modules of this package).
"""


def __getattr__(name: str):
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.batch"), name)
