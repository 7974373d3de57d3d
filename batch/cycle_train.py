"""A cycle's training stage: plan the tasks, train and register every zoo model, promote the best.

Tasks are the churn classifier and, when the profile names a value target, the
customer-value regressor; a profile without one trains the classifier only. Each task
registers its versions under the dataset's namespace
(:meth:`schemas.namespace.Namespace.registered_models`), tagged with the dataset and its
contract hash. Aliases move only after every model of every task is trained, logged and
verified (:func:`promote_candidates`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch import zoo
from batch.features import TaskData, regression_data
from batch.promotion import promote, register_version
from batch.run_log import contract_tags, log_model_run, reference_profile
from batch.training import FitPlan, TrainedModel, plan_tasks, train_classifier, train_regressor
from plumbing.progress import Progress
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile


def blas_threads(n: int):
    """Context manager capping the BLAS libraries' threads at ``n`` (0: leave them alone).

    The zoo's numpy models make many small matrix products; with one OpenBLAS thread per
    core each product's hand-off between threads costs more than the product when the cores
    are shared. ``churn bench batch --dataset telco`` at load average 2.3-2.8 on 2 cores:
    full cycle 109.9 s with the default threads (k-means fit + threshold folds 58 s), 49.3 s
    with one (k-means 6.9 s), same hold-out metrics. See ``Settings.batch_blas_threads``.

    Parameters
    ----------
    n : int
        Threads; 0 means no limit.

    Raises
    ------
    ValueError
        If ``n`` is negative.
    """
    from threadpoolctl import threadpool_limits

    if n < 0:
        raise ValueError(f"batch_blas_threads: expected >= 0, got {n!r}")
    return threadpool_limits(limits=n, user_api="blas") if n else contextlib.nullcontext()


@dataclass
class Task:
    """One task of a cycle: its models, data and where its versions are registered.

    Attributes
    ----------
    task : {"classification", "regression"}
    registered_name : str
        Registered MLflow model name (from the dataset's namespace).
    metric : {"roc_auc", "r2"}
        The promotion metric (higher is better).
    data : TaskData
    factories : dict of str to callable
        Zoo models to train.
    train : callable
        ``train(name, factory, data) -> TrainedModel``.
    holdout : tuple of (DataFrame, ndarray)
        The hold-out rows as read (raw columns plus derived features) and their targets;
        the current champion is re-scored on them before promotion.
    reference : dict
        :func:`batch.run_log.reference_profile` of the training rows (the stream's drift reference).
    """

    task: str
    registered_name: str
    metric: str
    data: TaskData
    factories: dict[str, Callable[[], Any]]
    train: Callable[[str, Callable[[], Any], TaskData], TrainedModel]
    holdout: tuple[pd.DataFrame, np.ndarray]
    reference: dict[str, Any]


def model_set(profile: DatasetProfile, only: set[str] | None) -> list[str]:
    """The zoo models a cycle of ``profile`` trains: classifiers, and regressors when it has a value target.

    Parameters
    ----------
    profile : DatasetProfile
    only : set of str, optional

    Returns
    -------
    list of str
        Sorted per task, classifiers first.
    """
    regressors = sorted(zoo.regressors(only)) if profile.regression_target is not None else []
    return sorted(zoo.classifiers(only)) + regressors


def plan_cycle_tasks(
    frame: pd.DataFrame, profile: DatasetProfile, data: TaskData, settings, only: set[str] | None
) -> tuple[list[Task], FitPlan]:
    """The cycle's tasks on featurised ``data`` (and, with a value target, the regression data).

    Parameters
    ----------
    frame : DataFrame
        The typed input with its derived features.
    profile : DatasetProfile
    data : TaskData
        :func:`batch.features.classification_data` of ``frame``.
    settings : plumbing.settings.Settings
        The sample caps and ``batch_oof_max_rows``.
    only : set of str, optional
        Train only these zoo models.

    Returns
    -------
    tasks : list of Task
        Classification first; no regression task without a value target.
    cls_plan : FitPlan
        The classifiers' plan (its threshold method is logged with the cycle).
    """
    classifier_name, regressor_name = Namespace.for_dataset(profile.name).registered_models()
    holdout_frame = frame.iloc[data.test_idx]
    reg_data = regression_data(frame, profile) if profile.regression_target is not None else None
    # The stream's drift references, from the whole training part: before planning, which may
    # drop the classification training matrix (it keeps its own split of the rows).
    cls_reference = reference_profile(data.preprocessor, data.X_train)
    reg_reference = reference_profile(reg_data.preprocessor, reg_data.X_train) if reg_data is not None else {}
    cls_plan, reg_plan = plan_tasks(
        data, reg_data, oof_max_rows=settings.batch_oof_max_rows, sample_caps=zoo.sample_caps(settings)
    )
    tasks = [
        Task(
            "classification",
            classifier_name,
            "roc_auc",
            data,
            zoo.classifiers(only),
            lambda name, factory, d: train_classifier(name, factory, d, plan=cls_plan),
            (holdout_frame, data.y_test),
            cls_reference,
        )
    ]
    if reg_data is not None:
        tasks.append(
            Task(
                "regression",
                regressor_name,
                "r2",
                reg_data,
                zoo.regressors(only),
                lambda name, factory, d: train_regressor(name, factory, d, plan=reg_plan),
                (holdout_frame, reg_data.y_test),
                reg_reference,
            )
        )
    return tasks, cls_plan


def train_and_register(
    tracker,
    tasks: list[Task],
    *,
    profile: DatasetProfile,
    experiment_id: str,
    parent_id: str,
    cycle_id: str,
    models: list[TrainedModel],
    timings: dict[str, float],
    progress: dict[str, str],
) -> list[tuple[Task, list[dict[str, Any]]]]:
    """Train every model of every task, log its run and register (and verify) its version.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    tasks : list of Task
    profile : DatasetProfile
    experiment_id, parent_id, cycle_id : str
    models : list of TrainedModel
        Appended to as each model is trained (the cycle's result).
    timings : dict of str to float
        Seconds per stage, added to (``fit``, ``tune_threshold``, ``evaluate``,
        ``log_models``, ``train_<task>``).
    progress : dict
        ``progress["stage"]`` names the running stage (for :class:`batch.cycle.CycleError`).

    Returns
    -------
    list of (Task, list of dict)
        Per task with at least one model, the registered versions
        (:func:`batch.promotion.register_version`'s dicts).
    """
    for key in ("fit", "tune_threshold", "evaluate", "log_models"):
        timings.setdefault(key, 0.0)
    candidates = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            t0 = time.perf_counter()
            progress["stage"] = f"train_{task.task}"
            versions = []
            # A bar on a terminal, a line every few seconds elsewhere (a cycle runs for minutes).
            with Progress(f"{profile.name} {task.task}", len(task.factories), unit="model") as bar:
                for name, factory in task.factories.items():
                    bar.set_postfix(name)
                    trained = task.train(name, factory, task.data)
                    models.append(trained)
                    timings["fit"] += trained.metrics["fit_s"]
                    timings["tune_threshold"] += trained.metrics.get("tune_s", 0.0)
                    timings["evaluate"] += trained.metrics["eval_s"]
                    t1 = time.perf_counter()
                    run_id, path = log_model_run(
                        tracker,
                        experiment_id,
                        parent_id,
                        cycle_id,
                        profile,
                        task.task,
                        trained,
                        task.data,
                        Path(tmp),
                        task.reference,
                    )
                    versions.append(
                        register_version(
                            tracker,
                            task.registered_name,
                            run_id,
                            path,
                            trained.metrics,
                            feature_names=list(task.data.preprocessor.feature_names_in_),
                            model=name,
                            metric=task.metric,
                            extra_tags=contract_tags(profile),
                        )
                    )
                    trained.holdout_pred = None  # logged; keep the result small
                    timings["log_models"] += time.perf_counter() - t1
                    bar.update()
            timings[f"train_{task.task}"] = time.perf_counter() - t0
            if versions:
                candidates.append((task, versions))
    return candidates


def promote_candidates(
    tracker, candidates: list[tuple[Task, list[dict[str, Any]]]], settings, margin: float
) -> dict[str, dict[str, Any]]:
    """Each task's best version (by its metric) through :func:`batch.promotion.promote`.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    candidates : list of (Task, list of dict)
        From :func:`train_and_register`.
    settings : plumbing.settings.Settings
        ``promotion_max_champion_drop``, ``promotion_min_recall_ratio``.
    margin : float
        By how much a candidate must beat the champion.

    Returns
    -------
    dict of str to dict
        Per registered model name, the promoted (or held back) version.
    """
    promoted = {}
    for task, versions in candidates:
        best = max(versions, key=lambda v: v["metrics"][task.metric])
        promoted[task.registered_name] = promote(
            tracker,
            best,
            task.metric,
            margin,
            holdout=task.holdout,
            max_champion_drop=settings.promotion_max_champion_drop,
            min_recall_ratio=settings.promotion_min_recall_ratio,
        )
    return promoted
