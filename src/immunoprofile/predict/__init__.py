"""TFR risk: features from a profile (:mod:`.features`), the classifier
(:mod:`.estimator`), the fitted model, training and prediction (:mod:`.model`), model
files (:mod:`.model_file`), cross-validated evaluation (:mod:`.evaluation`), and the
shipped default model (``models/``, trained on SIMULATED data).

In a notebook, ``import immunoprofile.predict as predict`` gives every public name of
these modules (``predict.train``, ``predict.evaluate``, ``predict.load_model``,
``predict.predict_patients``…), each imported from its module on first use (scikit-learn
and pandas load only then). Code inside the package imports from the modules themselves.
"""

from .._moved import forwarding_getattr

__getattr__ = forwarding_getattr(__name__, ("model", "features", "estimator", "model_file",
                                             "evaluation"))
