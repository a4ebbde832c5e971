"""TFR risk: features from a profile, the classifier, its JSON model files, evaluation, and
the shipped default model (``models/``, trained on SIMULATED data).

The names of the former module ``immunoprofile.predict`` are still found here, for one
release (import them from the modules of this package).
"""


def __getattr__(name: str):
    import importlib

    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.model"), name)
