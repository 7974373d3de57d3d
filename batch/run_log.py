"""A cycle's MLflow runs: the parent run per cycle, one nested run per model with its artifact.

Each model run holds the model's params, hold-out metrics, evaluation plots and the
:class:`~scratch_models.pipeline.ScoringPipeline` artifact (``model/pipeline.npz``),
whose JSON header carries the dataset's name and contract hash (``dataset``,
``contract_sha256``: :attr:`schemas.profiles.DatasetProfile.digest`) beside the stream's
drift reference (:func:`reference_profile`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batch.evaluation_artifacts import log_classifier_artifacts, log_loss_curve, log_regressor_artifacts
from batch.training import TrainedModel, predict_in_chunks
from schemas.events import contract_metadata
from schemas.profiles import DatasetProfile
from scratch_models.drift import FeatureReference, profile_from_features
from scratch_models.pipeline import ScoringPipeline


def contract_tags(profile: DatasetProfile) -> dict[str, str]:
    """What ties a model to the event contract it was trained for: ``dataset`` and ``contract_sha256``.

    Recorded as tags of every registered model version, params of the cycle's and each
    model's run, and in the artifact's header (:func:`schemas.events.contract_metadata`, the one
    definition); a worker serving another contract refuses it.

    Parameters
    ----------
    profile : DatasetProfile

    Returns
    -------
    dict of str to str
    """
    return contract_metadata(profile)


#: The experiment tag MLflow 3's UI reads to choose an experiment's view, and the value of its
#: model-training view (runs, metrics, models); without it an experiment may open on the GenAI
#: view (traces). Values from the installed mlflow (``mlflow.experimentKind``:
#: ``custom_model_development`` or ``genai_development``).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: The UI's query parameter for the same choice (MLflow >= 3.5 lets a person switch between
#: "GenAI" and "Machine learning" and remembers the choice in the browser; a link that names it
#: opens on model training whatever was chosen last).
WORKFLOW_QUERY = "workflowType=machine_learning"


def experiment_name(dataset: str) -> str:
    """The MLflow experiment of a dataset (a profile's name): ``churn-<dataset>``."""
    return f"churn-{dataset}"


def ensure_experiment(tracker, name: str) -> str:
    """The id of experiment ``name``, created if missing, tagged to open on the model-training view.

    An existing experiment without the tag (created before it was set) gets it; one whose tag
    someone changed in the UI keeps their choice.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    name : str

    Returns
    -------
    str
    """
    exp = tracker.get_experiment_by_name(name)
    if exp is None:
        return tracker.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if EXPERIMENT_KIND_TAG not in (exp.tags or {}):
        tracker.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """A link that opens experiment ``experiment_id`` on MLflow's model-training view.

    Parameters
    ----------
    tracking_uri : str
        ``http://host:port`` of the tracking server.
    experiment_id : str

    Returns
    -------
    str
        ``<tracking_uri>/#/experiments/<id>?workflowType=machine_learning``.
    """
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?{WORKFLOW_QUERY}"


def start_parent_run(tracker, profile: DatasetProfile, cycle_id: str) -> tuple[str, str]:
    """Create the cycle's run in experiment ``churn-<dataset>``; return ``(experiment_id, run_id)``.

    The experiment is created if missing and opens on MLflow's model-training view
    (:func:`ensure_experiment`).

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    profile : DatasetProfile
    cycle_id : str

    Returns
    -------
    tuple of str
    """
    experiment_id = ensure_experiment(tracker, experiment_name(profile.name))
    parent = tracker.create_run(
        experiment_id, run_name=f"cycle-{cycle_id}", tags={"cycle_id": cycle_id, "dataset": profile.name}
    )
    for key, value in contract_tags(profile).items():
        tracker.log_param(parent.info.run_id, key, value)
    return experiment_id, parent.info.run_id


def log_model_run(
    tracker,
    experiment_id: str,
    parent_id: str,
    cycle_id: str,
    profile: DatasetProfile,
    task: str,
    trained: TrainedModel,
    data,
    tmp: Path,
    reference: dict[str, Any],
) -> tuple[str, Path]:
    """One nested MLflow run per model: params, hold-out metrics, evaluation plots and the pipeline artifact.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    experiment_id, parent_id, cycle_id : str
    profile : DatasetProfile
    task : {"classification", "regression"}
    trained : TrainedModel
    data : batch.features.TaskData
        The task's featurised matrices (the hold-out is re-scored only if training kept no predictions).
    tmp : Path
        Folder the artifact is written to before upload.
    reference : dict
        :func:`reference_profile` of the task's training rows.

    Returns
    -------
    run_id : str
    path : Path
        The local artifact.
    """
    run = tracker.create_run(
        experiment_id,
        run_name=trained.name,
        tags={"mlflow.parentRunId": parent_id, "model": trained.name, "task": task, "cycle_id": cycle_id},
    )
    run_id = run.info.run_id
    for k, v in {**trained.params, **contract_tags(profile)}.items():
        tracker.log_param(run_id, k, v)
    for k, v in trained.metrics.items():
        tracker.log_metric(run_id, k, v)
    pipeline = ScoringPipeline(
        data.preprocessor,
        trained.model,
        trained.threshold,
        metadata={
            **contract_tags(profile),
            "model": trained.name,
            "task": task,
            "cycle_id": cycle_id,
            "metrics": trained.metrics,
            "reference_profile": reference,
        },
    )
    path = pipeline.save(tmp / task / trained.name / "pipeline.npz")
    tracker.log_artifact(run_id, str(path), artifact_path="model")
    # The hold-out predictions of training's evaluation: the hold-out is not scored twice.
    pred = trained.holdout_pred
    model: Any = trained.model  # a classifier or regressor of the zoo; the base type has neither method
    if task == "classification":
        if pred is None:
            pred = predict_in_chunks(lambda X: model.predict_proba(X)[:, 1], data.X_test)
        log_classifier_artifacts(tracker, run_id, trained.name, data.y_test, pred, trained.threshold)
    else:
        if pred is None:
            pred = predict_in_chunks(model.predict, data.X_test)
        log_regressor_artifacts(tracker, run_id, data.y_test, pred)
    log_loss_curve(tracker, run_id, trained.model)
    tracker.set_terminated(run_id, "FINISHED")
    return run_id, path


def reference_profile(preprocessor, X_train) -> dict[str, Any]:
    """Training distribution of each raw input feature, for the stream's PSI drift monitor.

    Bins and shares are :class:`scratch_models.drift.FeatureReference`'s. Numeric columns: the
    distinct decile cut points (``edges``, at most 9) and the share of training rows in each of
    the ``len(edges) + 1`` bins. Categorical columns: each training category's share. Recovered
    from the featurised training matrix (numerics un-scaled and rounded to 1e-6, one-hot column
    means), so no raw frame is needed.

    Parameters
    ----------
    preprocessor : scratch_models.preprocessing.TabularPreprocessor
        Fitted.
    X_train : ndarray of shape (n_samples, n_features_out), float64
        ``preprocessor``'s output on the training rows.

    Returns
    -------
    dict
        JSON-able ``{"n_rows", "numeric": {name: {"edges", "proportions"}},
        "categorical": {name: {"categories", "proportions"}}}``.
    """
    X = np.asarray(X_train, dtype=np.float64)
    features = []
    for j, name in enumerate(preprocessor.numeric_features):
        x = np.round(X[:, j] * preprocessor.scale_[j] + preprocessor.mean_[j], 6)
        features.append(FeatureReference.numeric_from_values(name, x))
    col = len(preprocessor.numeric_features)
    for name, cats in zip(preprocessor.categorical_features, preprocessor.categories_):
        features.append(FeatureReference.categorical(name, cats, X[:, col : col + len(cats)].mean(axis=0)))
        col += len(cats)
    return profile_from_features(features, X.shape[0])
