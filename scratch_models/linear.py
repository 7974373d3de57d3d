"""Linear classifiers.

Logistic regression is fitted by Newton's method on the L2-penalised
log-likelihood (iteratively reweighted least squares; Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, 2nd ed., 2009, sec. 4.4.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models.base import BaseModel, ClassifierMixin
from scratch_models.validation import check_X_y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so neither branch overflows in exp.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


class LogisticRegression(ClassifierMixin, BaseModel):
    """Binary logistic regression with an L2 penalty, fitted by Newton-Raphson.

    Parameters
    ----------
    C : float, default 1.0
        Inverse regularisation strength (scikit-learn's convention): the penalty is
        ``||w||^2 / (2 C)``; the intercept is not penalised.
    class_weight : {"balanced"} or None, default None
        ``"balanced"`` weighs each class by ``n_samples / (2 * n_class_samples)``.
    max_iter : int, default 100
        Newton iterations at most.
    tol : float, default 1e-8
        Stop when the largest absolute Newton step is below ``tol``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), float64
    intercept_ : float
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    n_iter_ : int

    References
    ----------
    Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2009, 4.4.1.
    """

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = None,
        max_iter: int = 100,
        tol: float = 1e-8,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> "LogisticRegression":
        """Fit on ``X`` of shape (n_samples, n_features) and binary ``y``.

        Raises
        ------
        ValueError
            On bad shapes, non-finite values, a single class or more than two classes.
        """
        X, y = check_X_y(X, y)
        if self.C <= 0:
            raise ValueError(f"C: expected > 0, got {self.C!r}")
        y_idx = self._encode_y(y)
        if self.classes_.shape[0] != 2:
            raise ValueError(f"LogisticRegression is binary; y has {self.classes_.shape[0]} classes")
        n, d = X.shape
        t = y_idx.astype(np.float64)
        if self.class_weight == "balanced":
            counts = np.bincount(y_idx, minlength=2)
            sw = (n / (2.0 * counts))[y_idx]
        elif self.class_weight is None:
            sw = np.ones(n)
        else:
            raise ValueError(f"class_weight: expected 'balanced' or None, got {self.class_weight!r}")
        Xb = np.hstack([X, np.ones((n, 1))])
        penalty = np.full(d + 1, 1.0 / self.C)
        penalty[-1] = 0.0
        w = np.zeros(d + 1)
        self.n_iter_ = 0
        for it in range(1, self.max_iter + 1):
            p = _sigmoid(Xb @ w)
            grad = Xb.T @ (sw * (p - t)) + penalty * w
            h = sw * p * (1.0 - p)
            H = (Xb * h[:, None]).T @ Xb + np.diag(penalty) + 1e-10 * np.eye(d + 1)
            step = np.linalg.solve(H, grad)
            w -= step
            self.n_iter_ = it
            if np.max(np.abs(step)) < self.tol:
                break
        self.coef_ = w[:-1].copy()
        self.intercept_ = float(w[-1])
        self.n_features_in_ = d
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds of the positive class, shape (n_samples,), float64."""
        X = self._validate_X(X)
        return X @ self.coef_ + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, 2), float64; rows sum to 1."""
        p1 = _sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p1, p1])

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Per-feature contribution to the log-odds, ``coef_ * X``, shape (n_samples, n_features)."""
        X = self._validate_X(X)
        return X * self.coef_
