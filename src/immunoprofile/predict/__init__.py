"""TFR risk: features from a profile (:mod:`.features`), the classifier
(:mod:`.estimator`), the fitted model, training and prediction (:mod:`.model`), model
files (:mod:`.model_file`), cross-validated evaluation (:mod:`.evaluation`), and the
shipped default model (``models/``, trained on SIMULATED data).

In a notebook, ``import immunoprofile.predict as predict`` gives every public name of
these modules (``predict.train``, ``predict.evaluate``, ``predict.load_model``,
``predict.predict_patients``…), each imported from its module on first use (scikit-learn
and pandas load only then). Code inside the package imports from the modules themselves.
"""

_MODULES = ("model", "features", "estimator", "model_file", "evaluation")


def __getattr__(name: str):
    import importlib

    if not name.startswith("__"):
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}")
            if hasattr(found, name):
                return getattr(found, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
