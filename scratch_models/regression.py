"""Least-squares regressors: one feature, many features, and a degree-d polynomial.

All three solve the (ridge-penalised) normal equations in closed form on centred
data, so the intercept is never penalised (Hastie, Tibshirani & Friedman, *The
Elements of Statistical Learning*, 2nd ed., 2009, sec. 3.2 and 3.4.1; Hoerl &
Kennard, "Ridge regression", Technometrics 12, 1970).
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Any

import numpy as np

from scratch_models.base import BaseModel, RegressorMixin
from scratch_models.validation import check_X_y


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of ``min ||y - Xw - b||^2 + alpha ||w||^2``."""
    x_mean = X.mean(axis=0)
    y_mean = float(y.mean())
    Xc = X - x_mean
    yc = y - y_mean
    if alpha > 0:
        A = Xc.T @ Xc
        A[np.diag_indices_from(A)] += alpha
        w = np.linalg.solve(A, Xc.T @ yc)
    else:
        # Minimum-norm least squares: one-hot blocks make Xc rank-deficient.
        w = np.linalg.lstsq(Xc, yc, rcond=None)[0]
    return w, y_mean - float(x_mean @ w)


def _check_target(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y: expected a numeric target, got dtype {y.dtype}")
    return y.astype(np.float64)


class _LeastSquares(RegressorMixin, BaseModel):
    """Shared predict for the regressors (not registered: name starts with ``_``)."""

    coef_: np.ndarray
    intercept_: float

    def _design(self, X: np.ndarray) -> np.ndarray:
        return X

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target, shape (n_samples,), float64 (units of ``y``)."""
        X = self._validate_X(X)
        return self._design(X) @ self.coef_ + self.intercept_


class LinearRegression(_LeastSquares):
    """Simple linear regression on one feature, ``y = a x_j + b``, by least squares.

    Parameters
    ----------
    feature : int, str or None, default None
        Column used: an index, a column name (when ``X`` is a DataFrame), or ``None``
        for the column most correlated (absolute Pearson r) with ``y`` in training.

    Attributes
    ----------
    feature_index_ : int
        Column used.
    coef_ : ndarray of shape (n_features,), float64
        Zero except at ``feature_index_`` (slope, units of y per unit of x).
    intercept_ : float
    n_features_in_ : int

    References
    ----------
    Hastie, Tibshirani & Friedman, 2009, sec. 3.2 (least squares); Galton's
    regression line, Pearson's r for the column choice.
    """

    def __init__(self, feature: int | str | None = None) -> None:
        self.feature = feature

    def fit(self, X: Any, y: Any) -> LinearRegression:
        """Fit on ``X`` of shape (n_samples, n_features) and float ``y`` of shape (n_samples,).

        Raises
        ------
        ValueError
            On bad shapes or values, or an unknown ``feature``.
        """
        columns = list(getattr(X, "columns", [])) or None
        X, y = check_X_y(X, y)
        y = _check_target(y)
        d = X.shape[1]
        if self.feature is None:
            xc = X - X.mean(axis=0)
            yc = y - y.mean()
            denom = np.sqrt((xc * xc).sum(axis=0) * float(yc @ yc))
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(denom > 0, (xc.T @ yc) / np.where(denom > 0, denom, 1.0), 0.0)
            j = int(np.argmax(np.abs(r)))
        elif isinstance(self.feature, str):
            if columns is None or self.feature not in columns:
                raise ValueError(f"feature: {self.feature!r} is not a column of X")
            j = columns.index(self.feature)
        else:
            j = int(self.feature)
            if not 0 <= j < d:
                raise ValueError(f"feature: expected an index in [0, {d}), got {self.feature!r}")
        w, b = _ridge(X[:, [j]], y, 0.0)
        self.coef_ = np.zeros(d)
        self.coef_[j] = w[0]
        self.intercept_ = b
        self.feature_index_ = j
        self.n_features_in_ = d
        return self


class MultipleRegression(_LeastSquares):
    """Multiple linear regression by closed-form (ridge) least squares.

    Parameters
    ----------
    alpha : float, default 0.0
        L2 penalty on the coefficients (not the intercept); 0 gives ordinary least
        squares (minimum-norm solution when columns are collinear).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), float64
    intercept_ : float
    n_features_in_ : int

    References
    ----------
    Hastie, Tibshirani & Friedman, 2009, sec. 3.2 and 3.4.1; Hoerl & Kennard, 1970.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> MultipleRegression:
        """Fit on ``X`` of shape (n_samples, n_features) and float ``y`` of shape (n_samples,).

        Raises
        ------
        ValueError
            On bad shapes or values, or ``alpha < 0``.
        """
        X, y = check_X_y(X, y)
        y = _check_target(y)
        if not self.alpha >= 0:
            raise ValueError(f"alpha: expected >= 0, got {self.alpha!r}")
        self.coef_, self.intercept_ = _ridge(X, y, float(self.alpha))
        self.n_features_in_ = X.shape[1]
        return self


class PolynomialRegression(_LeastSquares):
    """Ridge regression on all monomials of degree 1..``degree`` (squares and interactions).

    With 40 input columns and ``degree=2`` the design has 40 + 40*41/2 = 860
    columns; the normal equations are 860 x 860, solved directly.

    Parameters
    ----------
    degree : int, default 2
    alpha : float, default 1.0
        L2 penalty on the coefficients (not the intercept).

    Attributes
    ----------
    powers_ : ndarray of shape (n_terms, degree), int64
        Column indices multiplied together for each term; ``-1`` pads lower degrees.
    coef_ : ndarray of shape (n_terms,), float64
    intercept_ : float
    n_features_in_ : int

    References
    ----------
    Hastie, Tibshirani & Friedman, 2009, sec. 5.1 (basis expansions) and 3.4.1 (ridge).
    """

    def __init__(self, degree: int = 2, alpha: float = 1.0) -> None:
        self.degree = degree
        self.alpha = alpha

    def _design(self, X: np.ndarray) -> np.ndarray:
        # Column -1 of the padded matrix is all ones, so padded slots multiply by 1.
        Xp = np.hstack([X, np.ones((X.shape[0], 1))])
        out = np.ones((X.shape[0], self.powers_.shape[0]))
        for slot in range(self.powers_.shape[1]):
            out *= Xp[:, self.powers_[:, slot]]
        return out

    def fit(self, X: Any, y: Any) -> PolynomialRegression:
        """Fit on ``X`` of shape (n_samples, n_features) and float ``y`` of shape (n_samples,).

        Raises
        ------
        ValueError
            On bad shapes or values, ``degree < 1`` or ``alpha < 0``.
        """
        X, y = check_X_y(X, y)
        y = _check_target(y)
        deg = int(self.degree)
        if deg < 1:
            raise ValueError(f"degree: expected >= 1, got {self.degree!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha: expected >= 0, got {self.alpha!r}")
        d = X.shape[1]
        terms = [
            list(c) + [-1] * (deg - k) for k in range(1, deg + 1) for c in combinations_with_replacement(range(d), k)
        ]
        self.powers_ = np.array(terms, dtype=np.int64)
        self.n_features_in_ = d
        self.coef_, self.intercept_ = _ridge(self._design(X), y, float(self.alpha))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target, shape (n_samples,), float64 (units of ``y``).

        For ``degree=2`` the expansion is never built: the model is
        ``b + X w + rowsum((X W) * X)`` with ``W`` the (upper-triangular) matrix of
        second-order coefficients, two matrix products per batch.
        """
        X = self._validate_X(X)
        if self.powers_.shape[1] != 2:
            return self._design(X) @ self.coef_ + self.intercept_
        w1, W = self._quadratic_form()
        return X @ w1 + np.einsum("ij,ij->i", X @ W, X) + self.intercept_

    def _quadratic_form(self) -> tuple[np.ndarray, np.ndarray]:
        """``(w1, W)`` of a degree-2 model, built once per fitted ``coef_`` (a one-row call costs
        more building them than using them)."""
        cached = getattr(self, "_quadratic", None)
        if cached is not None and cached[0] is self.coef_:
            return cached[1], cached[2]
        linear = self.powers_[:, 1] < 0
        w1 = np.zeros(self.n_features_in_)
        w1[self.powers_[linear, 0]] = self.coef_[linear]
        W = np.zeros((self.n_features_in_, self.n_features_in_))
        W[self.powers_[~linear, 0], self.powers_[~linear, 1]] = self.coef_[~linear]
        # Keyed on the coefficient array itself: a refit or a load assigns a new one.
        self._quadratic = (self.coef_, w1, W)
        return w1, W
