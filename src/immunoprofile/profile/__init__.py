"""A patient's immune profile: the tables (populations, samples, profiles) built from
counted tubes (:mod:`.tables`).

The names of the former module ``immunoprofile.profile`` are still found here, for one
release (import them from the modules of this package).
"""


def __getattr__(name: str):
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.tables"), name)
