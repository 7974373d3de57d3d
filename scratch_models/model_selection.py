"""Stratified splitting: k-fold assignment, hold-out split and sampling that keep class shares.

One definition for the models (Platt calibration folds of the SVM and perceptron,
early-stopping and cluster-choice validation splits) and for the batch protocol
(train/test hold-out, out-of-fold threshold tuning, large-data validation split and
fit samples). Stratification keeps each class's share in every part, which lowers the
variance of the cross-validated estimate (Kohavi, "A study of cross-validation and
bootstrap for accuracy estimation and model selection", IJCAI 1995).

Every function shuffles each class with one generator, class by class in sorted label
order, so the same labels and seed give the same rows.
"""

from __future__ import annotations

import numpy as np

#: Most distinct labels :func:`stratified_sample` accepts: more means a continuous
#: target was passed, whose per-value strata would round to empty samples.
MAX_STRATA = 100

RandomState = int | np.random.Generator | None


def _class_rows(y: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of each class (sorted label order), each shuffled by ``rng``."""
    out = []
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        rng.shuffle(rows)
        out.append(rows)
    return out


def stratified_folds(y: np.ndarray, n_folds: int, random_state: RandomState, *, carry_over: bool = False) -> np.ndarray:
    """Fold number of every row, each class dealt round-robin over the folds after a seeded shuffle.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Class labels (any sortable dtype).
    n_folds : int
        Number of folds (>= 2).
    random_state : int, numpy.random.Generator or None
        Seed of ``np.random.default_rng``, or a generator to draw from (advanced in place).
    carry_over : bool, default False
        Deal each class on from the fold where the previous class stopped, so fold sizes
        differ by at most one overall (scikit-learn's ``StratifiedKFold`` deals the sorted
        labels the same way); the models' calibration folds use it. False starts every class
        at fold 0: the batch protocol's folds (threshold tuning, ``churn bench models-cv``),
        kept so their seeded figures do not move.

    Returns
    -------
    ndarray of shape (n_samples,), int64
        Fold of each row, in ``0 .. n_folds - 1``.
    """
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    fold = np.empty(y.shape[0], dtype=np.int64)
    offset = 0
    for rows in _class_rows(y, rng):
        fold[rows] = (np.arange(rows.shape[0]) + offset) % n_folds
        if carry_over:
            offset += rows.shape[0]
    return fold


def stratified_holdout(y: np.ndarray, fraction: float, random_state: RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into two parts with ``round(fraction * n_class)`` rows of each class held out.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Class labels (any sortable dtype).
    fraction : float
        Share of each class in the held-out part, in (0, 1).
    random_state : int, numpy.random.Generator or None
        Seed of ``np.random.default_rng``, or a generator to draw from (advanced in place).

    Returns
    -------
    kept, held_out : ndarray of int64, sorted
        A class of two or more rows has at least one row in each part (its held-out count is
        clipped to ``1 .. n_class - 1``); a single-row class stays in ``kept``.
    """
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    kept, held = [], []
    for rows in _class_rows(y, rng):
        n = rows.shape[0]
        k = min(max(int(round(fraction * n)), 1), n - 1) if n > 1 else 0
        held.append(rows[:k])
        kept.append(rows[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded sample of about ``n`` rows keeping each class's share.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Class labels (at most :data:`MAX_STRATA` distinct values).
    n : int
        Rows wanted; each class contributes ``round(n * n_class / n_samples)``.
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    ndarray of shape (about min(n, n_samples),), int64
        Every row when ``n >= n_samples``.

    Raises
    ------
    ValueError
        If ``y`` holds more than :data:`MAX_STRATA` distinct values (a regression target:
        stratify on the churn label instead).
    """
    y = np.asarray(y)
    if n >= y.shape[0]:
        return np.arange(y.shape[0])
    classes = np.unique(y)
    if classes.shape[0] > MAX_STRATA:
        raise ValueError(
            f"stratified_sample: expected class labels (at most {MAX_STRATA} distinct), got "
            f"{classes.shape[0]} distinct values in {y.shape[0]} rows; stratify a regression "
            "target's sample on the churn label"
        )
    rng = np.random.default_rng(seed)
    picked = []
    for cls in classes:
        idx = np.flatnonzero(y == cls)
        k = int(round(n * idx.shape[0] / y.shape[0]))
        picked.append(rng.choice(idx, size=min(k, idx.shape[0]), replace=False))
    return np.sort(np.concatenate(picked))
