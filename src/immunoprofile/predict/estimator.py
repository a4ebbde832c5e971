"""The classifier: standardised features in an L2-regularised logistic regression, as a
scikit-learn estimator (``check_estimator`` passes)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class TFRClassifier(ClassifierMixin, BaseEstimator):
    """Standardised, L2-regularised logistic regression for P(TFR grade ≥ 2).

    Parameters
    ----------
    C : float, default 1.0
        Inverse regularisation strength (scikit-learn's convention), on standardised
        features. Small cohorts want strong regularisation.
    class_weight : {None, "balanced"}, default None
        As in :class:`sklearn.linear_model.LogisticRegression`. None keeps probabilities
        calibrated to the training prevalence.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation learnt in ``fit`` (scale 1 for a constant feature).
    coef_ : ndarray of shape (1, n_features)
        Log-odds per standard deviation of each feature.
    intercept_ : ndarray of shape (1,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = None):
        self.C = C
        self.class_weight = class_weight

    def fit(self, X, y) -> TFRClassifier:
        """Fit on features ``X`` (n_patients × n_features) and binary outcomes ``y``."""
        from sklearn.linear_model import LogisticRegression

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if self.classes_.size > 2:
            raise ValueError("Only binary classification is supported: TFR grade >= 2 or "
                             f"not (got {self.classes_.size} classes)")
        if self.classes_.size < 2:
            raise ValueError("TFRClassifier needs both outcomes; got 1 class")
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000)
        model.fit((X - self.mean_) / self.scale_, y_index)
        self.coef_ = model.coef_.copy()
        self.intercept_ = model.intercept_.copy()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the second class (TFR grade ≥ 2) for each row of ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return ((X - self.mean_) / self.scale_) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of both classes, shape (n, 2); column 1 is P(TFR grade ≥ 2)."""
        from scipy.special import expit

        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The more probable class of each row."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
