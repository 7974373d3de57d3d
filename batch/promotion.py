"""Registering model versions in MLflow and moving the ``champion``/``challenger`` aliases."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from churn_stream.artifacts import download_pipeline
from scratch_models.persistence import sha256_file

logger = logging.getLogger(__name__)

#: Registered model names.
CLASSIFIER_NAME = "churn-classifier"
REGRESSOR_NAME = "sales-regressor"
ARTIFACT_PATH = "model/pipeline.npz"


def current_champion(tracker, name: str):
    """The ``champion`` model version of ``name``, or ``None`` when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def register_version(tracker, name: str, run_id: str, local_path: str | Path, metrics: dict[str, float],
                     feature_names: list[str], model: str, metric: str) -> dict[str, Any]:
    """Register the run's artifact as a new version of ``name`` and verify it.

    The artifact is downloaded back through the tracking server and checked
    (SHA-256, loadable, scores) before the version is returned, so nothing
    half-written can be promoted later.

    Returns
    -------
    dict
        ``model_name``, ``model_version``, ``alias`` (None until promoted),
        ``artifact_uri``, ``sha256``, ``feature_names``, ``run_id``, ``model``, ``metrics``.
    """
    from mlflow.exceptions import MlflowException

    sha = sha256_file(local_path)
    try:
        tracker.get_registered_model(name)
    except MlflowException:
        tracker.create_registered_model(name)
    tags = {"sha256": sha, metric: repr(float(metrics[metric])), "artifact_path": ARTIFACT_PATH, "model": model}
    mv = tracker.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    artifact_uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    download_pipeline(tracker.tracking_uri, artifact_uri, sha)
    return {
        "model_name": name,
        "model_version": str(mv.version),
        "alias": None,
        "artifact_uri": artifact_uri,
        "sha256": sha,
        "feature_names": feature_names,
        "run_id": run_id,
        "model": model,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def promote(tracker, candidate: dict[str, Any], metric: str, margin: float = 0.0) -> dict[str, Any]:
    """Give ``candidate`` the ``champion`` alias if it beats the current one by more than ``margin``, else ``challenger``.

    The current champion's score is its registered tag ``metric`` (hold-out value
    from its own cycle, on the same fixed split).

    Returns
    -------
    dict
        ``candidate`` with ``alias`` set.
    """
    name = candidate["model_name"]
    champ = current_champion(tracker, name)
    alias = "champion"
    if champ is not None and champ.version != candidate["model_version"]:
        champ_score = float(champ.tags.get(metric, "-inf"))
        # "Beats" is strict: an identical retrain keeps the champion in service.
        if not candidate["metrics"][metric] > champ_score + margin:
            alias = "challenger"
    tracker.set_registered_model_alias(name, alias, candidate["model_version"])
    logger.info("promoted model=%s version=%s alias=%s %s=%.4f", name, candidate["model_version"], alias, metric,
                candidate["metrics"][metric])
    return dict(candidate, alias=alias)
