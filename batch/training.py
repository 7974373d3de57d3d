"""Training and hold-out evaluation of one model on one task."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batch.features import TaskData
from batch.metrics import best_f1_threshold, classification_metrics, regression_metrics
from scratch_models.base import BaseModel

logger = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A fitted model with its tuned threshold and hold-out metrics.

    Attributes
    ----------
    name : str
        Zoo name, e.g. ``"logistic_regression"``.
    model : BaseModel
        Fitted on the whole training part.
    threshold : float
        Classification cut tuned on out-of-fold predictions of the training part
        (never the hold-out); 0.5 for regressors (unused).
    metrics : dict of str to float
        Hold-out metrics: ``roc_auc``, ``f1`` (at 0.5), ``f1_tuned``, ``accuracy``,
        ``precision``, ``recall`` at the tuned threshold; or ``rmse``, ``mae``,
        ``r2``, ``mape`` for regressors. ``fit_s`` is the final fit time in seconds.
    """

    name: str
    model: BaseModel
    threshold: float
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)


#: Folds of the out-of-fold predictions the F1 threshold is tuned on.
THRESHOLD_FOLDS = 5


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of every row, each class dealt round-robin after a seeded shuffle.

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    fold = np.empty(y.shape[0], dtype=np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(idx.shape[0]) % n_folds
    return fold


def oof_threshold(factory: Callable[[], BaseModel], X: np.ndarray, y: np.ndarray,
                  n_folds: int = THRESHOLD_FOLDS, seed: int = 43) -> float:
    """F1-optimal threshold on stratified out-of-fold probabilities of ``(X, y)``.

    Every training row is scored once by a model that did not see it, so the
    threshold is chosen on all training rows instead of one 20 % split (on Telco
    the 12 zoo classifiers' hold-out tuned F1 rises by 0.004 on average; 5 fits on
    80 % instead of 1).
    """
    fold = stratified_folds(y, n_folds, seed)
    oof = np.empty(y.shape[0])
    for k in range(n_folds):
        inside = fold != k
        oof[~inside] = factory().fit(X[inside], y[inside]).predict_proba(X[~inside])[:, 1]
    threshold, _ = best_f1_threshold(y, oof)
    return threshold


def train_classifier(name: str, factory: Callable[[], BaseModel], data: TaskData,
                     seed: int = 42) -> TrainedModel:
    """Fit a classifier, tune its F1 threshold out of fold, evaluate on the hold-out.

    The threshold is chosen on stratified 5-fold out-of-fold probabilities of the
    training rows (:func:`oof_threshold`); the model is then fitted on all training
    rows. The hold-out is touched only for the final metrics.
    """
    threshold = oof_threshold(factory, data.X_train, data.y_train, THRESHOLD_FOLDS, seed + 1)
    model = factory()
    t0 = time.perf_counter()
    model.fit(data.X_train, data.y_train)
    fit_s = time.perf_counter() - t0
    proba = model.predict_proba(data.X_test)[:, 1]
    tuned = classification_metrics(data.y_test, proba, threshold)
    at_half = classification_metrics(data.y_test, proba, 0.5)
    metrics = {
        "roc_auc": tuned["roc_auc"],
        "f1": at_half["f1"],
        "f1_tuned": tuned["f1"],
        "accuracy": tuned["accuracy"],
        "precision": tuned["precision"],
        "recall": tuned["recall"],
        "threshold": threshold,
        "fit_s": fit_s,
    }
    logger.info("trained model=%s roc_auc=%.4f f1_tuned=%.4f threshold=%.3f fit_s=%.2f",
                name, metrics["roc_auc"], metrics["f1_tuned"], threshold, fit_s)
    return TrainedModel(name, model, threshold, metrics, model.get_params())


def train_regressor(name: str, factory: Callable[[], BaseModel], data: TaskData) -> TrainedModel:
    """Fit a regressor on the training part and evaluate it on the hold-out."""
    model = factory()
    t0 = time.perf_counter()
    model.fit(data.X_train, data.y_train)
    fit_s = time.perf_counter() - t0
    metrics = regression_metrics(data.y_test, model.predict(data.X_test))
    metrics["fit_s"] = fit_s
    logger.info("trained model=%s r2=%.5f rmse=%.2f fit_s=%.2f", name, metrics["r2"], metrics["rmse"], fit_s)
    return TrainedModel(name, model, 0.5, metrics, model.get_params())


def predict_holdout(trained: TrainedModel, data: TaskData) -> np.ndarray:
    """Positive-class probabilities on the hold-out, shape (n_test,)."""
    return trained.model.predict_proba(data.X_test)[:, 1]
