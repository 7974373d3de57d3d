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


def register_and_promote(tracker, name: str, run_id: str, local_path: str | Path, metrics: dict[str, float],
                         feature_names: list[str], margin: float = 0.0,
                         metric: str = "roc_auc") -> dict[str, Any]:
    """Register the run's artifact as a new version and set its alias.

    The version becomes ``champion`` when there is none yet or when it beats the
    current champion's hold-out ``metric`` by at least ``margin``; ``challenger``
    otherwise. The artifact is downloaded back and verified (SHA-256, loadable)
    before any alias moves, so nothing half-written is ever promoted.

    Returns
    -------
    dict
        ``model_name``, ``model_version``, ``alias``, ``artifact_uri``, ``sha256``,
        ``feature_names``, ``run_id``, ``metrics``.
    """
    from mlflow.exceptions import MlflowException

    sha = sha256_file(local_path)
    try:
        tracker.get_registered_model(name)
    except MlflowException:
        tracker.create_registered_model(name)
    tags = {"sha256": sha, metric: f"{metrics[metric]:.6f}", "artifact_path": ARTIFACT_PATH}
    mv = tracker.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    artifact_uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    download_pipeline(tracker.tracking_uri, artifact_uri, sha)  # verify before promotion

    champ = current_champion(tracker, name)
    alias = "champion"
    if champ is not None:
        champ_score = float(champ.tags.get(metric, "-inf"))
        if metrics[metric] < champ_score + margin:
            alias = "challenger"
    tracker.set_registered_model_alias(name, alias, mv.version)
    logger.info("registered model=%s version=%s alias=%s %s=%.4f", name, mv.version, alias, metric, metrics[metric])
    return {
        "model_name": name,
        "model_version": str(mv.version),
        "alias": alias,
        "artifact_uri": artifact_uri,
        "sha256": sha,
        "feature_names": feature_names,
        "run_id": run_id,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
