"""Evaluation artifacts logged with each model run: curves as JSON, plots as PNG, loss curves.

Classifiers: ROC and precision-recall curves and the confusion matrix at the tuned
threshold, on the hold-out. Regressors: residuals and predicted-vs-actual plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batch.metrics import confusion_counts, pr_curve, roc_curve
from schemas.registry import CONFUSION_MATRIX_PATH, PR_CURVE_PATH, ROC_CURVE_PATH


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(4.5, 4.0), dpi=100)


def log_classifier_artifacts(
    tracker, run_id: str, name: str, y_test: np.ndarray, proba: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Log ``roc_curve.json``, ``pr_curve.json``, ``confusion_matrix.json`` and their PNG plots.

    Also logs ``tn``, ``fp``, ``fn``, ``tp`` as metrics. Returns the confusion counts.
    """
    import matplotlib.pyplot as plt

    roc = roc_curve(y_test, proba)
    pr = pr_curve(y_test, proba)
    cm = confusion_counts(y_test, proba, threshold)
    tracker.log_dict(run_id, roc, ROC_CURVE_PATH)
    tracker.log_dict(run_id, pr, PR_CURVE_PATH)
    tracker.log_dict(run_id, dict(cm, threshold=threshold), CONFUSION_MATRIX_PATH)
    for k, v in cm.items():
        tracker.log_metric(run_id, k, v)

    fig, ax = _figure()
    ax.plot(roc["fpr"], roc["tpr"], label=name)
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (hold-out)")
    tracker.log_figure(run_id, fig, "eval/roc.png")
    plt.close(fig)

    fig, ax = _figure()
    ax.plot(pr["recall"], pr["precision"])
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (hold-out)")
    tracker.log_figure(run_id, fig, "eval/pr.png")
    plt.close(fig)

    fig, ax = _figure()
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["stay", "churn"],
        yticklabels=["stay", "churn"],
        xlabel="predicted",
        ylabel="actual",
        title=f"Confusion matrix @ {threshold:.3f}",
    )
    tracker.log_figure(run_id, fig, "eval/confusion_matrix.png")
    plt.close(fig)
    return cm


#: Most hold-out points drawn in a regressor's scatter plots: a seeded uniform sample
#: beyond it (200,000 dots at 1M rows draw for seconds and show no more than 5,000).
SCATTER_MAX_POINTS = 5_000


def scatter_sample(
    y_test: np.ndarray, y_pred: np.ndarray, max_points: int = SCATTER_MAX_POINTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` ``(actual, predicted)`` pairs, a seeded uniform sample in row order.

    Parameters
    ----------
    y_test, y_pred : ndarray of shape (n_samples,), float64
    max_points : int, default :data:`SCATTER_MAX_POINTS`
    seed : int, default 0

    Returns
    -------
    y_test, y_pred : ndarray of shape (min(n_samples, max_points),), float64
    """
    y_test, y_pred = np.asarray(y_test), np.asarray(y_pred)
    if y_test.shape[0] <= max_points:
        return y_test, y_pred
    keep = np.sort(np.random.default_rng(seed).choice(y_test.shape[0], size=max_points, replace=False))
    return y_test[keep], y_pred[keep]


def log_regressor_artifacts(tracker, run_id: str, y_test: np.ndarray, y_pred: np.ndarray) -> None:
    """Log residuals and predicted-vs-actual plots (USD) of at most :data:`SCATTER_MAX_POINTS` hold-out rows."""
    import matplotlib.pyplot as plt

    y_test, y_pred = scatter_sample(y_test, y_pred)
    fig, ax = _figure()
    ax.scatter(y_pred, y_test - y_pred, s=4, alpha=0.4)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="predicted (USD)", ylabel="residual (USD)", title="Residuals (hold-out)")
    tracker.log_figure(run_id, fig, "eval/residuals.png")
    plt.close(fig)

    fig, ax = _figure()
    ax.scatter(y_test, y_pred, s=4, alpha=0.4)
    lim = [float(min(y_test.min(), y_pred.min())), float(max(y_test.max(), y_pred.max()))]
    ax.plot(lim, lim, "--", color="grey", linewidth=0.8)
    ax.set(xlabel="actual (USD)", ylabel="predicted (USD)", title="Predicted vs actual (hold-out)")
    tracker.log_figure(run_id, fig, "eval/predicted_vs_actual.png")
    plt.close(fig)


def log_loss_curve(tracker, run_id: str, model: Any) -> None:
    """Per-iteration training loss as the step metric ``train_loss`` when the model records one."""
    from mlflow.entities import Metric

    curve = getattr(model, "loss_curve_", None)
    if not curve:
        return
    now = 0
    tracker.log_batch(run_id, metrics=[Metric("train_loss", float(v), now, step) for step, v in enumerate(curve)])
