"""Training and hold-out evaluation of one model on one task."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batch.features import TaskData, stratified_split
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
        Classification cut tuned on a validation split of the training part
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


def train_classifier(name: str, factory: Callable[[], BaseModel], data: TaskData,
                     seed: int = 42) -> TrainedModel:
    """Fit a classifier, tune its F1 threshold on validation data, evaluate on the hold-out.

    The threshold is chosen on a stratified 20 % validation split of the training
    rows with a model fitted on the other 80 %; the model is then refitted on all
    training rows. The hold-out is touched only for the final metrics.
    """
    fit_idx, val_idx = stratified_split(data.y_train, 0.2, seed + 1)
    probe = factory().fit(data.X_train[fit_idx], data.y_train[fit_idx])
    threshold, _ = best_f1_threshold(data.y_train[val_idx], probe.predict_proba(data.X_train[val_idx])[:, 1])
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
