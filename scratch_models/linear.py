"""Linear classifiers and the calibration helpers they share.

* :class:`LogisticRegression` is fitted by Newton's method on the L2-penalised
  log-likelihood (iteratively reweighted least squares; Hastie, Tibshirani &
  Friedman, *The Elements of Statistical Learning*, 2nd ed., 2009, sec. 4.4.1).
* :class:`Perceptron` is Rosenblatt's perceptron (1958) with the averaged weights of
  Freund & Schapire (1999), calibrated by Platt scaling.
* :func:`platt_fit` is Platt scaling (Platt, 1999) with the target smoothing and
  safeguarded Newton solver of Lin, Lin & Weng (2007); scores are out-of-fold
  decision values from
  :func:`scratch_models.model_selection.stratified_folds`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models.base import BaseModel, ClassifierMixin
from scratch_models.model_selection import stratified_folds
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

    def fit(self, X: Any, y: Any) -> LogisticRegression:
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


# ---------------------------------------------------------------- calibration
def platt_fit(score: np.ndarray, y01: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Fit Platt's sigmoid ``P(y=1 | f) = 1 / (1 + exp(A f + B))``.

    Parameters
    ----------
    score : ndarray of shape (n_samples,), float64
        Decision values, ideally out-of-fold.
    y01 : ndarray of shape (n_samples,), {0, 1}
    max_iter : int, default 100

    Returns
    -------
    A, B : float

    References
    ----------
    Platt, "Probabilistic outputs for support vector machines", 1999; Lin, Lin & Weng,
    "A note on Platt's probabilistic outputs for support vector machines", Machine
    Learning 68, 2007 (Algorithm 1: smoothed targets, Newton with backtracking).
    """
    f = np.asarray(score, dtype=np.float64)
    y = np.asarray(y01).astype(bool)
    n_pos = float(y.sum())
    n_neg = float(y.shape[0] - n_pos)
    # Bayesian targets instead of 0/1 so the sigmoid does not overfit separable scores.
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 0.0, float(np.log((n_neg + 1.0) / (n_pos + 1.0)))

    def objective(a: float, b: float) -> float:
        z = f * a + b
        # sum of t*z + log(1 + exp(-z)), computed stably.
        return float(np.sum(t * z + np.logaddexp(0.0, -z)))

    fval = objective(a, b)
    sigma = 1e-12
    for _ in range(max_iter):
        z = f * a + b
        p = _sigmoid(-z)  # = 1 / (1 + exp(z)), the model probability
        q = 1.0 - p
        d2 = p * q
        h11 = float(np.sum(f * f * d2)) + sigma
        h22 = float(np.sum(d2)) + sigma
        h21 = float(np.sum(f * d2))
        d1 = t - p
        g1 = float(np.sum(f * d1))
        g2 = float(np.sum(d1))
        if abs(g1) < 1e-5 and abs(g2) < 1e-5:
            break
        det = h11 * h22 - h21 * h21
        da = -(h22 * g1 - h21 * g2) / det
        db = -(-h21 * g1 + h11 * g2) / det
        gd = g1 * da + g2 * db
        step = 1.0
        while step >= 1e-10:
            na, nb = a + step * da, b + step * db
            nf = objective(na, nb)
            if nf < fval + 1e-4 * step * gd:
                a, b, fval = na, nb, nf
                break
            step /= 2.0
        else:
            break
    return float(a), float(b)


def platt_proba(score: np.ndarray, a: float, b: float) -> np.ndarray:
    """Two-column probabilities from decision values and Platt's ``(A, B)``.

    Returns
    -------
    ndarray of shape (n_samples, 2), float64
        ``[:, 1] = 1 / (1 + exp(A f + B))``; rows sum to 1.
    """
    p1 = _sigmoid(-(np.asarray(score, dtype=np.float64) * a + b))
    return np.column_stack([1.0 - p1, p1])


# ---------------------------------------------------------------- perceptron
class Perceptron(ClassifierMixin, BaseModel):
    """Averaged binary perceptron with Platt-scaled probabilities.

    Rows are visited in a fresh random order each epoch; a mistake
    (``y_i (w . x_i + b) <= 0``, labels in {-1, +1}) adds ``y_i x_i`` to ``w``.
    The returned weights are the average of ``w`` over every step, which behaves
    like a large-margin classifier and is far more stable than the last iterate.
    Probabilities come from a sigmoid fitted on out-of-fold decision values.

    Parameters
    ----------
    max_iter : int, default 10
        Epochs over the training rows.
    calibration_folds : int, default 3
        Folds for the out-of-fold decision values used by Platt scaling.
    random_state : int or None, default None
        Seed of the visiting order and of the folds.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), float64
        Averaged weights.
    intercept_ : float
    platt_a_, platt_b_ : float
        Platt sigmoid ``P(y=1|f) = 1 / (1 + exp(A f + B))``.
    classes_ : ndarray of shape (2,)
    n_features_in_ : int

    References
    ----------
    Rosenblatt, "The perceptron: a probabilistic model for information storage and
    organization in the brain", Psychological Review 65, 1958. Freund & Schapire,
    "Large margin classification using the perceptron algorithm", Machine Learning 37,
    1999 (averaging). Daume III, *A Course in Machine Learning*, 2012, Alg. 7 (the
    O(1)-per-step averaging trick). Platt, 1999.
    """

    def __init__(self, max_iter: int = 10, calibration_folds: int = 3, random_state: int | None = None) -> None:
        self.max_iter = max_iter
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    @staticmethod
    def _train(X: np.ndarray, ypm: np.ndarray, epochs: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        n, d = X.shape
        Xb = np.hstack([X, np.ones((n, 1))])
        w = np.zeros(d + 1)
        u = np.zeros(d + 1)  # sum of c * update, so that average = w - u / c
        c = 1.0
        rows = [Xb[i] for i in range(n)]
        ys = ypm.tolist()
        for _ in range(epochs):
            for i in rng.permutation(n).tolist():
                xi = rows[i]
                yi = ys[i]
                if yi * float(w @ xi) <= 0.0:
                    w += yi * xi
                    u += (yi * c) * xi
                c += 1.0
        avg = w - u / c
        return avg[:-1].copy(), float(avg[-1])

    def fit(self, X: Any, y: Any) -> Perceptron:
        """Fit on ``X`` of shape (n_samples, n_features), float64, and binary ``y``.

        Raises
        ------
        ValueError
            On bad shapes, non-finite values, or not exactly two classes.
        """
        X, y = check_X_y(X, y)
        y_idx = self._encode_y(y)
        if self.classes_.shape[0] != 2:
            raise ValueError(f"Perceptron is binary; y has {self.classes_.shape[0]} classes")
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter: expected >= 1, got {self.max_iter!r}")
        rng = np.random.default_rng(self.random_state)
        ypm = np.where(y_idx == 1, 1.0, -1.0)
        k = int(self.calibration_folds)
        score = np.empty(X.shape[0])
        if k >= 2 and np.bincount(y_idx).min() >= k:
            fold = stratified_folds(y_idx, k, rng, carry_over=True)
            for f in range(k):
                tr = fold != f
                w, b = self._train(X[tr], ypm[tr], int(self.max_iter), rng)
                score[~tr] = X[~tr] @ w + b
        w, b = self._train(X, ypm, int(self.max_iter), rng)
        if not (k >= 2 and np.bincount(y_idx).min() >= k):
            score = X @ w + b
        self.coef_ = w
        self.intercept_ = b
        self.platt_a_, self.platt_b_ = platt_fit(score, y_idx)
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed score ``w . x + b``, shape (n_samples,), float64; positive means class 1."""
        X = self._validate_X(X)
        return X @ self.coef_ + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Platt-calibrated probabilities, shape (n_samples, 2), float64; rows sum to 1."""
        return platt_proba(self.decision_function(X), self.platt_a_, self.platt_b_)
