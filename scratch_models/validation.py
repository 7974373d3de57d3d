"""Input validation shared by every model (the role of scikit-learn's ``check_array``)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before ``fit``."""


def check_array(X: Any, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 2-D array, rejecting NaN and infinity.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str, default "X"
        Name used in error messages.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float64
        A new array when conversion was needed; the caller's array is never modified
        by the models, which do not write into their input.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, is empty, or holds NaN or infinite values.
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric 2-D array, got {type(X).__name__}: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n_samples, n_features), got {arr.ndim}-D")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least 1 sample and 1 feature, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}: expected finite values, got {arr[bad[0], bad[1]]} at row {bad[0]}, column {bad[1]}")
    return np.ascontiguousarray(arr)


def check_X_y(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a training pair.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        On shape mismatch, non-1-D ``y``, or non-finite values in either.
    """
    X = check_array(X)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of shape (n_samples,), got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y disagree on n_samples: {X.shape[0]} != {y.shape[0]}")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError("y: expected finite values, got NaN or infinity")
    return X, y
