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
from scratch_models.model_selection import stratified_folds, stratified_holdout, stratified_sample

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
        ``r2``, ``mape`` for regressors. ``fit_s`` is the final fit's wall seconds,
        ``fit_cpu_s`` its CPU seconds (all threads of the process; comparable on a busy machine).
    params : dict
        Hyperparameters plus how the model was fitted (``fit_rows``, ``threshold_method``).
    holdout_pred : ndarray of shape (n_test,), float64, or None
        Hold-out probabilities of the positive class (classifiers) or predictions
        (regressors) from the evaluation, reused for the evaluation plots.
    """

    name: str
    model: BaseModel
    threshold: float
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    holdout_pred: np.ndarray | None = field(default=None, repr=False)


#: Folds of the out-of-fold predictions the F1 threshold is tuned on.
THRESHOLD_FOLDS = 5

#: Default of ``Settings.batch_oof_max_rows``: above this many training rows the
#: threshold is tuned on one stratified validation split instead of out of fold.
OOF_MAX_ROWS = 50_000

#: Share of the training rows held out for threshold tuning on large data.
VALIDATION_SHARE = 0.1

#: Rows of the hold-out scored at once (bounds the memory of wide designs such as
#: the degree-2 polynomial expansion).
PREDICT_CHUNK_ROWS = 20_000


def oof_threshold(
    factory: Callable[[], BaseModel], X: np.ndarray, y: np.ndarray, n_folds: int = THRESHOLD_FOLDS, seed: int = 43
) -> float:
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


@dataclass
class FitPlan:
    """How one task's models are fitted and their thresholds tuned, decided once per task from its size.

    Small training sets (at most ``oof_max_rows``) keep the 5-fold out-of-fold
    threshold and a final fit on every training row. Larger ones hold out a
    stratified :data:`VALIDATION_SHARE` of the training rows, fit each model once on
    the rest and tune its threshold on the held-out share: with hundreds of
    thousands of rows one validation split estimates the threshold as well as the
    folds would, at a fifth of the fits (the usual hold-out validation of large
    data, e.g. Hastie, Tibshirani & Friedman 2009, sec. 7.2). Models named in
    ``sample_caps`` are fitted on a seeded stratified sample of at most that many of
    the fit rows (the standard remedy for super-linear or many-epoch learners;
    scikit-learn's guide recommends sub-sampling for kernel approximations and
    clustering at this scale). The hold-out is always scored in full.

    Attributes
    ----------
    X_fit : ndarray of shape (n_fit, n_features), float64
    y_fit : ndarray of shape (n_fit,)
    X_val, y_val : ndarray or None
        The validation split; None when thresholds are tuned out of fold.
    sample_caps : dict of str to int
        Zoo name -> most rows that model is fitted on.
    seed : int
    strata : ndarray of shape (n_fit,) or None
        Class labels the samples keep the shares of; None means ``y_fit`` (classifiers).
        A regression plan passes the churn label of the same rows: a continuous target
        cannot be stratified on.
    """

    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    sample_caps: dict[str, int] = field(default_factory=dict)
    seed: int = 42
    strata: np.ndarray | None = field(default=None, repr=False)
    _samples: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def threshold_method(self) -> str:
        """``"oof_5fold"`` or ``"validation_split"``."""
        return "oof_5fold" if self.X_val is None else "validation_split"

    def _sample_index(self, name: str) -> np.ndarray | None:
        """Fit-row indices of ``name``'s sample, or None when it fits every fit row."""
        cap = self.sample_caps.get(name)
        if cap is None or cap >= self.y_fit.shape[0]:
            return None
        if cap not in self._samples:
            strata = self.y_fit if self.strata is None else self.strata
            if strata.shape[0] != self.y_fit.shape[0]:
                raise ValueError(
                    f"FitPlan.strata: expected {self.y_fit.shape[0]} labels (one per fit row), got {strata.shape[0]}"
                )
            self._samples[cap] = stratified_sample(strata, cap, self.seed + 2)
        return self._samples[cap]

    def rows_for(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` model ``name`` is fitted on; one sample per cap size, shared by the task's models."""
        idx = self._sample_index(name)
        if idx is None:
            return self.X_fit, self.y_fit
        return self.X_fit[idx], self.y_fit[idx]

    def params_for(self, name: str) -> dict[str, Any]:
        """What was done for ``name``, as MLflow params."""
        idx = self._sample_index(name)
        out: dict[str, Any] = {
            "fit_rows": int(self.y_fit.shape[0] if idx is None else idx.shape[0]),
            "threshold_method": self.threshold_method,
        }
        if self.y_val is not None:
            out["validation_rows"] = int(self.y_val.shape[0])
        return out


def plan_fit(
    data: TaskData,
    *,
    oof_max_rows: int = OOF_MAX_ROWS,
    sample_caps: dict[str, int] | None = None,
    stratify: np.ndarray | None = None,
    seed: int = 42,
) -> FitPlan:
    """Decide how ``data``'s models are fitted (see :class:`FitPlan`).

    Parameters
    ----------
    data : TaskData
    oof_max_rows : int, default :data:`OOF_MAX_ROWS`
        Training rows up to which thresholds are tuned on 5-fold out-of-fold probabilities.
    sample_caps : dict of str to int, optional
        Zoo name -> most training rows that model is fitted on.
    stratify : ndarray of shape (n_train,), optional
        Class labels to stratify the validation split and samples on (default ``data.y_train``;
        regression passes the churn label).
    seed : int, default 42

    Returns
    -------
    FitPlan

    Raises
    ------
    ValueError
        If ``oof_max_rows`` or a cap is below 1.
    """
    caps = dict(sample_caps or {})
    if oof_max_rows < 1 or any(v < 1 for v in caps.values()):
        raise ValueError(f"oof_max_rows and sample caps: expected >= 1, got {oof_max_rows!r}, {caps!r}")
    n = data.y_train.shape[0]
    if n <= oof_max_rows:
        return FitPlan(data.X_train, data.y_train, sample_caps=caps, seed=seed, strata=stratify)
    strat = data.y_train if stratify is None else stratify
    fit_idx, val_idx = stratified_holdout(strat, VALIDATION_SHARE, seed + 1)
    return FitPlan(
        data.X_train[fit_idx],
        data.y_train[fit_idx],
        data.X_train[val_idx],
        data.y_train[val_idx],
        sample_caps=caps,
        seed=seed,
        strata=None if stratify is None else strat[fit_idx],
    )


def plan_tasks(
    data: TaskData,
    reg_data: TaskData | None,
    *,
    oof_max_rows: int = OOF_MAX_ROWS,
    sample_caps: dict[str, int] | None = None,
) -> tuple[FitPlan, FitPlan | None]:
    """The classification and regression plans of one cycle, from the same training rows.

    The classification plan is :func:`plan_fit`'s; when it splits off validation rows,
    ``data.X_train`` is dropped (the plan holds every training row already; 600 MB at 1M
    retail rows). Regressors have no threshold to tune: they fit every training row (or
    their cap), and their samples keep the churn shares (``data.y_train``), because the
    continuous sales target cannot be stratified on.

    Parameters
    ----------
    data, reg_data : TaskData
        Classification and regression data of the same split; ``reg_data`` is None when the
        profile has no value target.
    oof_max_rows : int, default :data:`OOF_MAX_ROWS`
    sample_caps : dict of str to int, optional

    Returns
    -------
    cls_plan : FitPlan
    reg_plan : FitPlan or None
        None without ``reg_data``.
    """
    caps = dict(sample_caps or {})
    cls_plan = plan_fit(data, oof_max_rows=oof_max_rows, sample_caps=caps)
    if cls_plan.X_val is not None:
        data.X_train = np.empty((0, data.X_train.shape[1]))
    if reg_data is None:
        return cls_plan, None
    return cls_plan, FitPlan(reg_data.X_train, reg_data.y_train, sample_caps=caps, strata=data.y_train)


def predict_in_chunks(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, chunk_rows: int = PREDICT_CHUNK_ROWS
) -> np.ndarray:
    """``predict(X)`` evaluated on at most ``chunk_rows`` rows at a time and concatenated."""
    if X.shape[0] <= chunk_rows:
        return predict(X)
    return np.concatenate([predict(X[i : i + chunk_rows]) for i in range(0, X.shape[0], chunk_rows)])


def train_classifier(
    name: str, factory: Callable[[], BaseModel], data: TaskData, seed: int = 42, plan: FitPlan | None = None
) -> TrainedModel:
    """Fit a classifier, tune its F1 threshold on rows it did not fit, evaluate on the hold-out.

    Without ``plan`` (or with a small-data plan) the threshold is chosen on
    stratified 5-fold out-of-fold probabilities of the training rows
    (:func:`oof_threshold`) and the model is then fitted on all training rows. With
    a large-data plan the model is fitted once on the plan's fit rows and the
    threshold tuned on its validation split. The hold-out is touched only for the
    final metrics. ``metrics`` also carry ``tune_s`` (threshold search incl. its
    fits) and ``eval_s`` (hold-out scoring and metrics), ``params`` the plan's
    ``fit_rows`` and ``threshold_method``.
    """
    plan = plan or FitPlan(data.X_train, data.y_train, seed=seed)
    X_fit, y_fit = plan.rows_for(name)
    t0 = time.perf_counter()
    if plan.X_val is None or plan.y_val is None:
        threshold = oof_threshold(factory, X_fit, y_fit, THRESHOLD_FOLDS, seed + 1)
        tune_s = time.perf_counter() - t0
        model = factory()
        t0, cpu0 = time.perf_counter(), time.process_time()
        model.fit(X_fit, y_fit)
        fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    else:
        model = factory()
        cpu0 = time.process_time()
        model.fit(X_fit, y_fit)
        fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        t0 = time.perf_counter()
        val_proba = predict_in_chunks(lambda X: model.predict_proba(X)[:, 1], plan.X_val)
        threshold, _ = best_f1_threshold(plan.y_val, val_proba)
        tune_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = predict_in_chunks(lambda X: model.predict_proba(X)[:, 1], data.X_test)
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
        "fit_cpu_s": fit_cpu_s,
        "tune_s": tune_s,
        "eval_s": time.perf_counter() - t0,
    }
    logger.info(
        "trained model=%s roc_auc=%.4f f1_tuned=%.4f threshold=%.3f fit_s=%.2f",
        name,
        metrics["roc_auc"],
        metrics["f1_tuned"],
        threshold,
        fit_s,
    )
    return TrainedModel(name, model, threshold, metrics, model.get_params() | plan.params_for(name), proba)


def train_regressor(
    name: str, factory: Callable[[], BaseModel], data: TaskData, plan: FitPlan | None = None
) -> TrainedModel:
    """Fit a regressor on the training part (or the plan's rows for it) and evaluate it on the hold-out.

    A regressor has no threshold, so a large-data plan's validation rows are simply not
    fitted; ``metrics`` carry ``fit_s`` and ``eval_s``.
    """
    plan = plan or FitPlan(data.X_train, data.y_train)
    X_fit, y_fit = plan.rows_for(name)
    model = factory()
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.fit(X_fit, y_fit)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    t0 = time.perf_counter()
    pred = predict_in_chunks(model.predict, data.X_test)
    metrics = regression_metrics(data.y_test, pred)
    metrics["fit_s"] = fit_s
    metrics["fit_cpu_s"] = fit_cpu_s
    metrics["eval_s"] = time.perf_counter() - t0
    logger.info("trained model=%s r2=%.5f rmse=%.2f fit_s=%.2f", name, metrics["r2"], metrics["rmse"], fit_s)
    params = plan.params_for(name)
    params.pop("threshold_method", None)
    params.pop("validation_rows", None)
    return TrainedModel(name, model, 0.5, metrics, model.get_params() | params, pred)
