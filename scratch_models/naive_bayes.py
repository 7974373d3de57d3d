"""Naive Bayes with a Gaussian likelihood for continuous columns and a Bernoulli one for binary columns.

Class-conditional independence of the features (the "naive" assumption; Hastie,
Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., 2009,
sec. 6.6.3; Manning, Raghavan & Schuetze, *Introduction to Information Retrieval*,
2008, ch. 13 for the Bernoulli model). Variances get scikit-learn's smoothing
(``var_smoothing`` times the largest feature variance); Bernoulli probabilities get
Laplace (add-``alpha``) smoothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models.base import BaseModel, ClassifierMixin
from scratch_models.validation import check_X_y


class NaiveBayesClassifier(ClassifierMixin, BaseModel):
    """Mixed Gaussian/Bernoulli naive Bayes.

    A column is Bernoulli when it takes at most two distinct values in training
    (one-hot indicators, and booleans even after standard scaling); it is then
    read as the indicator ``x > (low + high) / 2``. Every other column is Gaussian.

    Parameters
    ----------
    binary_features : "auto" or list of int, default "auto"
        Columns to model as Bernoulli; ``"auto"`` detects them as above.
    var_smoothing : float, default 1e-9
        Added to every Gaussian variance, as a fraction of the largest column variance.
    alpha : float, default 1.0
        Laplace smoothing of the Bernoulli probabilities.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    class_log_prior_ : ndarray of shape (n_classes,), float64
    binary_mask_ : ndarray of shape (n_features,), bool
    threshold_ : ndarray of shape (n_features,), float64
        Indicator cut of each Bernoulli column (unused for Gaussian columns).
    theta_, var_ : ndarray of shape (n_classes, n_gaussian), float64
        Per-class means and smoothed variances of the Gaussian columns.
    feature_log_prob_ : ndarray of shape (n_classes, n_binary), float64
        ``log P(x_j = 1 | class)``.
    feature_log_neg_prob_ : ndarray of shape (n_classes, n_binary), float64
        ``log P(x_j = 0 | class)``.
    n_features_in_ : int

    References
    ----------
    Hastie, Tibshirani & Friedman, 2009, 6.6.3; Manning, Raghavan & Schuetze, 2008, 13.3;
    Chan, Golub & LeVeque, "Algorithms for computing the sample variance", 1983 (scikit-learn's
    ``var_smoothing``).
    """

    def __init__(
        self, binary_features: str | list[int] = "auto", var_smoothing: float = 1e-9, alpha: float = 1.0
    ) -> None:
        self.binary_features = binary_features
        self.var_smoothing = var_smoothing
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> NaiveBayesClassifier:
        """Fit on ``X`` of shape (n_samples, n_features), float64, and labels ``y``.

        Raises
        ------
        ValueError
            On bad shapes or values, a single class, or bad ``binary_features``.
        """
        X, y = check_X_y(X, y)
        y_idx = self._encode_y(y)
        n, d = X.shape
        k = self.classes_.shape[0]
        lo = X.min(axis=0)
        hi = X.max(axis=0)
        if isinstance(self.binary_features, str):
            if self.binary_features != "auto":
                raise ValueError(f"binary_features: expected 'auto' or a list of ints, got {self.binary_features!r}")
            n_distinct = np.array([np.unique(X[:, j]).shape[0] for j in range(d)])
            mask = n_distinct <= 2
        else:
            mask = np.zeros(d, dtype=bool)
            idx = np.asarray(self.binary_features, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= d):
                raise ValueError(f"binary_features: indices must be in [0, {d})")
            mask[idx] = True
        self.binary_mask_ = mask
        self.threshold_ = (lo + hi) / 2.0
        counts = np.bincount(y_idx, minlength=k).astype(np.float64)
        self.class_log_prior_ = np.log(counts / n)
        onehot = np.zeros((n, k))
        onehot[np.arange(n), y_idx] = 1.0
        G = X[:, ~mask]
        mean = (onehot.T @ G) / counts[:, None]
        sq = (onehot.T @ (G * G)) / counts[:, None]
        eps = float(self.var_smoothing) * (float(X.var(axis=0).max()) if d else 0.0)
        self.theta_ = mean
        self.var_ = np.maximum(sq - mean * mean, 0.0) + max(eps, 1e-300)
        B = (X[:, mask] > self.threshold_[mask]).astype(np.float64)
        a = float(self.alpha)
        p = (onehot.T @ B + a) / (counts[:, None] + 2.0 * a)
        p = np.clip(p, 1e-300, 1.0 - 1e-16)
        self.feature_log_prob_ = np.log(p)
        self.feature_log_neg_prob_ = np.log1p(-p)
        self.n_features_in_ = d
        return self

    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        G = X[:, ~self.binary_mask_]
        # sum_j log N(x_j; theta, var), expanded so it is one matrix product per term.
        inv = 1.0 / self.var_
        jll = -0.5 * (
            (G * G) @ inv.T
            - 2.0 * G @ (self.theta_ * inv).T
            + np.sum(self.theta_ * self.theta_ * inv + np.log(2.0 * np.pi * self.var_), axis=1)
        )
        B = (X[:, self.binary_mask_] > self.threshold_[self.binary_mask_]).astype(np.float64)
        jll += B @ (self.feature_log_prob_ - self.feature_log_neg_prob_).T + self.feature_log_neg_prob_.sum(axis=1)
        return jll + self.class_log_prior_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior class probabilities, shape (n_samples, n_classes), float64; rows sum to 1."""
        X = self._validate_X(X)
        jll = self._joint_log_likelihood(X)
        jll -= jll.max(axis=1, keepdims=True)
        p = np.exp(jll)
        return p / p.sum(axis=1, keepdims=True)
