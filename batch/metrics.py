"""Hold-out metrics for classifiers and regressors (numpy only).

ROC-AUC is the Mann-Whitney U statistic with average ranks for ties (Hanley &
McNeil, "The meaning and use of the area under a ROC curve", Radiology, 1982).
"""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x))
    # Boundaries of runs of equal values.
    edges = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(x)]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,), bool or {0, 1}
    score : ndarray of shape (n_samples,), float

    Raises
    ------
    ValueError
        If ``y_true`` holds a single class.
    """
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc: y_true needs both classes")
    r = _ranks(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 at ``threshold`` and ROC-AUC.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,), bool or {0, 1}
    proba : ndarray of shape (n_samples,), float64
        Positive-class probability.
    threshold : float, default 0.5
        Label positive when ``proba >= threshold``.

    Returns
    -------
    dict with keys ``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``, ``threshold``.
    """
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(proba) >= threshold
    tp = float(np.sum(pred & y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float(np.mean(pred == y)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, proba),
        "threshold": float(threshold),
    }


def best_f1_threshold(y_true: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 on (validation) data, and that F1.

    Every distinct score is a candidate; computed in O(n log n) from the sorted scores.

    Returns
    -------
    threshold : float
    f1 : float
    """
    tp, fp, cuts = _cumulative_counts(y_true, proba)
    n_pos = tp[-1]
    f1 = 2 * tp / (tp + fp + n_pos)
    i = int(np.argmax(f1))
    return float(cuts[i]), float(f1[i])


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE (same unit as y), R^2 and MAPE (percent, over y != 0)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    err = p - y
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    nz = y != 0
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot else 0.0,
        "mape": float(np.mean(np.abs(err[nz] / y[nz])) * 100.0) if nz.any() else float("nan"),
    }


def _thin(*arrays: np.ndarray, max_points: int) -> list[np.ndarray]:
    n = len(arrays[0])
    if n <= max_points:
        return list(arrays)
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return [a[keep] for a in arrays]


def _cumulative_counts(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when cutting at each distinct score (descending), and those scores."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order]
    last = np.r_[ss[1:] != ss[:-1], True]
    return np.cumsum(ys)[last], np.cumsum(~ys)[last], ss[last]


def roc_curve(y_true: np.ndarray, score: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC points (false/true positive rates at every distinct score), thinned to ``max_points``.

    Returns
    -------
    dict with ``fpr``, ``tpr``, ``thresholds`` lists (descending thresholds).
    """
    tps, fps, cuts = _cumulative_counts(y_true, score)
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    thr = np.r_[np.inf, cuts]
    fpr, tpr, thr = _thin(fpr, tpr, thr, max_points=max_points)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [float(t) for t in thr]}


def pr_curve(y_true: np.ndarray, score: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """Precision-recall points at every distinct score, thinned to ``max_points``."""
    tps, fps, cuts = _cumulative_counts(y_true, score)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(int(tps[-1]), 1)
    precision, recall, thr = _thin(precision, recall, cuts, max_points=max_points)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": thr.tolist()}


def confusion_counts(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, int]:
    """``tn``, ``fp``, ``fn``, ``tp`` at ``threshold`` (positive when ``proba >= threshold``)."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(proba) >= threshold
    return {
        "tn": int(np.sum(~pred & ~y)),
        "fp": int(np.sum(pred & ~y)),
        "fn": int(np.sum(~pred & y)),
        "tp": int(np.sum(pred & y)),
    }
