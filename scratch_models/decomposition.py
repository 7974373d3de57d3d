"""Principal component analysis by the singular value decomposition of the centred data.

Jolliffe, *Principal Component Analysis*, 2nd ed., Springer, 2002, ch. 1-3; Hastie,
Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., 2009, sec.
14.5.1. Component signs are fixed so the largest-magnitude loading of each
component is positive, which makes the result deterministic across LAPACK builds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from scratch_models.base import BaseModel
from scratch_models.validation import check_array


class PCA(BaseModel):
    """Linear projection onto the leading principal components.

    Parameters
    ----------
    n_components : int, float or None, default None
        An int keeps that many components; a float in (0, 1) keeps the fewest whose
        cumulative explained-variance ratio reaches it; ``None`` keeps
        ``min(n_samples, n_features)``.
    whiten : bool, default False
        Divide each projected column by its standard deviation.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), float64
    components_ : ndarray of shape (n_components_, n_features), float64
        Unit-norm principal axes, by decreasing variance.
    explained_variance_ : ndarray of shape (n_components_,), float64
        Variance along each axis (denominator ``n_samples - 1``).
    explained_variance_ratio_ : ndarray of shape (n_components_,), float64
    singular_values_ : ndarray of shape (n_components_,), float64
    n_components_ : int
    n_features_in_ : int

    References
    ----------
    Pearson, "On lines and planes of closest fit to systems of points in space", 1901;
    Jolliffe, 2002; Hastie, Tibshirani & Friedman, 2009, 14.5.1.
    """

    task: ClassVar[str] = "transformer"

    def __init__(self, n_components: int | float | None = None, whiten: bool = False) -> None:
        self.n_components = n_components
        self.whiten = whiten

    def fit(self, X: Any, y: Any = None) -> PCA:
        """Fit the axes on ``X`` of shape (n_samples, n_features), float64; ``y`` is ignored.

        Raises
        ------
        ValueError
            On bad values or an ``n_components`` outside its range.
        """
        X = check_array(X)
        n, d = X.shape
        self.mean_ = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        # Deterministic signs (scikit-learn's svd_flip, on the loadings).
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1.0
        vt *= signs[:, None]
        var = s**2 / max(n - 1, 1)
        total = float(var.sum())
        ratio = var / total if total > 0 else np.zeros_like(var)
        kmax = s.shape[0]
        nc = self.n_components
        if nc is None:
            k = kmax
        elif isinstance(nc, (int, np.integer)) and not isinstance(nc, bool):
            if not 1 <= nc <= kmax:
                raise ValueError(f"n_components: expected an int in [1, {kmax}], got {nc!r}")
            k = int(nc)
        elif isinstance(nc, float) and 0.0 < nc < 1.0:
            k = int(np.searchsorted(np.cumsum(ratio), nc - 1e-12) + 1)
            k = min(max(k, 1), kmax)
        else:
            raise ValueError(f"n_components: expected int, float in (0, 1) or None, got {nc!r}")
        self.components_ = np.ascontiguousarray(vt[:k])
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.singular_values_ = s[:k]
        self.n_components_ = k
        self.n_features_in_ = d
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` of shape (n_samples, n_features) to shape (n_samples, n_components_), float64."""
        X = self._validate_X(X)
        Z = (X - self.mean_) @ self.components_.T
        if self.whiten:
            Z /= np.sqrt(np.maximum(self.explained_variance_, 1e-300))
        return Z

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Map projected rows of shape (n_samples, n_components_) back to (n_samples, n_features)."""
        self._check_is_fitted()
        Z = check_array(Z, name="Z")
        if Z.shape[1] != self.n_components_:
            raise ValueError(f"Z has {Z.shape[1]} columns, expected {self.n_components_}")
        if self.whiten:
            Z = Z * np.sqrt(self.explained_variance_)
        return Z @ self.components_ + self.mean_
