"""Registering model versions in MLflow and moving the ``champion``/``challenger`` aliases."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plumbing.artifacts import download_pipeline, version_artifact_uri
from schemas.registry import ARTIFACT_PATH, CHALLENGER, CHAMPION, MODEL_DIR

# Explicit re-exports until batch.cycle and the tools import the names from schemas.registry.
from schemas.registry import CLASSIFIER_NAME as CLASSIFIER_NAME
from schemas.registry import REGRESSOR_NAME as REGRESSOR_NAME
from scratch_models.persistence import sha256_file

logger = logging.getLogger(__name__)
#: A champion that loses more than this (ROC-AUC or R^2) when re-scored on a cycle's data
#: is reported: same model, other data, so the data changed.
CHAMPION_DROP_WARN = 0.02


def current_champion(tracker, name: str):
    """The ``champion`` model version of ``name``, or ``None`` when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_version(
    tracker,
    name: str,
    run_id: str,
    local_path: str | Path,
    metrics: dict[str, float],
    feature_names: list[str],
    model: str,
    metric: str,
    extra_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Register the run's artifact as a new version of ``name`` and verify it.

    The artifact is downloaded back through the tracking server and checked
    (SHA-256, loadable, scores) before the version is returned, so nothing
    half-written can be promoted later.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    name : str
        Registered model name (created when missing).
    run_id : str
    local_path : str or Path
        The artifact as uploaded (its SHA-256 becomes the ``sha256`` tag).
    metrics : dict of str to float
    feature_names : list of str
    model : str
        Zoo model name.
    metric : {"roc_auc", "r2"}
        Recorded as a tag: the champion's fallback score.
    extra_tags : dict of str to str, optional
        More version tags: the cycle passes ``dataset`` and ``contract_sha256``, which a
        worker compares with the contract it serves.

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
    tags = {
        **(extra_tags or {}),
        "sha256": sha,
        metric: repr(float(metrics[metric])),
        "artifact_path": ARTIFACT_PATH,
        "model": model,
    }
    if "recall" in metrics:  # the recall floor's fallback when this version cannot be re-scored later
        tags["recall"] = repr(float(metrics["recall"]))
    mv = tracker.create_model_version(name, source=f"runs:/{run_id}/{MODEL_DIR}", run_id=run_id, tags=tags)
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


def champion_on_holdout(tracker, champ, metric: str, holdout) -> dict[str, float] | None:
    """The current champion's ``metric`` (and churn recall) re-measured on this cycle's hold-out.

    A champion's registered metric was measured on *its* cycle's hold-out. After a new
    source (``churn batch run --source``) that is other data, and comparing a candidate
    with it says nothing about which model is better on the data at hand; so the
    champion's artifact is downloaded (SHA-256 verified, never unpickled) and scored
    on the candidate's hold-out rows.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    champ : mlflow.entities.model_registry.ModelVersion
        The version holding the ``champion`` alias; its tags name the artifact and digest.
    metric : {"roc_auc", "r2"}
    holdout : tuple of (pandas.DataFrame, ndarray of shape (n,))
        The hold-out rows as read from the source (raw columns) and their targets.

    Returns
    -------
    dict of str to float, or None
        ``{metric: value}``, plus ``"recall"`` (churn recall at the champion's own
        threshold) for ``roc_auc``. None when it cannot be scored there (its artifact is
        unreadable or fails verification, or it needs columns this data lacks): the
        caller then falls back to the registered tags and says so.
    """
    from mlflow.exceptions import MlflowException

    from batch.features import frame_columns
    from batch.metrics import classification_metrics, regression_metrics
    from plumbing.artifacts import ArtifactVerificationError
    from scratch_models.persistence import ArtifactError

    frame, y_true = holdout
    try:
        pipeline = download_pipeline(tracker.tracking_uri, version_artifact_uri(champ), champ.tags["sha256"])
        missing = [c for c in pipeline.feature_names_in if c not in frame.columns]
        if missing:
            raise KeyError(f"columns missing from this data: {missing}")
        columns = frame_columns(frame, pipeline.feature_names_in)
        if metric == "roc_auc":
            scores = classification_metrics(y_true, pipeline.predict_proba(columns), pipeline.threshold)
            return {"roc_auc": scores["roc_auc"], "recall": scores["recall"]}
        return {metric: regression_metrics(y_true, pipeline.predict(columns))[metric]}
    except (MlflowException, ArtifactError, ArtifactVerificationError, KeyError, ValueError, OSError) as exc:
        logger.warning(
            "champion version=%s of %s not re-scored on this hold-out (%s: %s); comparing with its registered %s",
            champ.version,
            champ.name,
            type(exc).__name__,
            exc,
            metric,
        )
        return None


#: Two scores closer than this are a tie (the champion re-scored through its artifact and
#: the same model scored in training differ in the last bits only).
TIE_TOLERANCE = 1e-9


def promote(
    tracker,
    candidate: dict[str, Any],
    metric: str,
    margin: float = 0.0,
    holdout=None,
    max_champion_drop: float | None = None,
    min_recall_ratio: float | None = None,
) -> dict[str, Any]:
    """Give ``candidate`` the ``champion`` alias if it passes every promotion rule.

    Otherwise it gets ``challenger`` and the champion stays. The rules, each named in
    ``promotion_rules`` when it holds a candidate back:

    - ``tie`` / ``metric``: the candidate must beat the champion's ``metric`` by more than
      ``margin``; equal scores (within :data:`TIE_TOLERANCE`) are a tie, not a promotion,
      unless ``margin`` is negative.
    - ``recall_floor`` (classifiers): churn recall at the candidate's tuned threshold must be
      at least ``min_recall_ratio`` x the champion's recall at its own threshold on the same
      hold-out (the registered ``recall`` tag when it cannot be re-scored; no floor when the
      champion has neither).
    - ``champion_drop``: the champion, re-scored on this hold-out, fell more than
      ``max_champion_drop`` below its registered metric: the labels or their relation to the
      features changed, which a corrupt source and real concept drift both do, and a person
      should look before the stream's model changes (moving the alias by hand in MLflow
      promotes it; workers and the API follow).

    Both are measured on the same rows: the current champion is re-scored on the
    candidate's hold-out (:func:`champion_on_holdout`) when ``holdout`` is given; its
    registered tags (the hold-out values of its own cycle) are used only when that is
    impossible or ``holdout`` is None.

    Parameters
    ----------
    tracker : mlflow.MlflowClient
    candidate : dict
        From :func:`register_version`.
    metric : {"roc_auc", "r2"}
        Higher is better.
    margin : float, default 0.0
        How much the candidate must beat the champion by (strictly).
    holdout : tuple of (pandas.DataFrame, ndarray), optional
        The candidate's hold-out rows (raw columns) and targets.
    max_champion_drop : float, optional
        Threshold of the ``champion_drop`` rule; None: never held by it.
    min_recall_ratio : float, optional
        Threshold of the ``recall_floor`` rule (``CHURN_PROMOTION_MIN_RECALL_RATIO``, 0.9 in
        the cycle); None or 0: no floor.

    Returns
    -------
    dict
        ``candidate`` with ``alias`` set and, when a champion existed, ``champion_version``,
        ``champion_<metric>``, ``champion_metric_source`` (``"this hold-out"`` or
        ``"registered tag"``) and, for classifiers, ``champion_recall`` and ``recall_floor``;
        plus ``champion_registered_<metric>`` when the re-scored champion fell more than
        :data:`CHAMPION_DROP_WARN` below it (logged as a warning). When the candidate is held
        back: ``promotion_rules`` (list of rule names) and ``promotion_held`` (why, in words).
    """
    name = candidate["model_name"]
    champ = current_champion(tracker, name)
    alias = CHAMPION
    compared: dict[str, Any] = {}
    held: dict[str, str] = {}
    if champ is not None and champ.version != candidate["model_version"]:
        rescored = champion_on_holdout(tracker, champ, metric, holdout) if holdout is not None else None
        registered = float(champ.tags.get(metric, "-inf"))
        champ_score = rescored[metric] if rescored is not None else registered
        compared = {
            "champion_version": str(champ.version),
            f"champion_{metric}": champ_score,
            "champion_metric_source": "this hold-out" if rescored is not None else "registered tag",
        }
        if rescored is not None and registered - champ_score > CHAMPION_DROP_WARN:
            compared[f"champion_registered_{metric}"] = registered
            logger.warning(
                "champion version=%s of %s scores %s=%.4f on this cycle's data against %.4f on its own: "
                "the labels or their relation to the features changed (concept drift, or a labelling "
                "error in the source); check the source before relying on the new champion",
                champ.version,
                name,
                metric,
                champ_score,
                registered,
            )
        score = candidate["metrics"][metric]
        # "Beats" is strict: an identical retrain keeps the champion in service (a negative
        # margin, e.g. -1 to force a promotion, lets a tie through).
        tie = abs(score - champ_score) <= TIE_TOLERANCE
        if not score > champ_score + margin or (tie and margin >= 0):
            if tie:
                held["tie"] = f"tie: {metric} {score:.4f} equals the champion's (version {champ.version})"
            else:
                held["metric"] = (
                    f"{metric} {score:.4f} does not beat the champion's {champ_score:.4f} by more than {margin:g}"
                )
        if "recall" in candidate["metrics"] and min_recall_ratio:
            champ_recall = rescored.get("recall") if rescored is not None else None
            if champ_recall is None and "recall" in champ.tags:
                champ_recall = float(champ.tags["recall"])
            if champ_recall is not None:
                floor = min_recall_ratio * champ_recall
                compared["champion_recall"], compared["recall_floor"] = champ_recall, floor
                if candidate["metrics"]["recall"] < floor:
                    held["recall_floor"] = (
                        f"churn recall {candidate['metrics']['recall']:.4f} at the tuned threshold is below the "
                        f"floor {floor:.4f} ({min_recall_ratio:g} x the champion's {champ_recall:.4f})"
                    )
        if rescored is not None and max_champion_drop is not None and registered - champ_score > max_champion_drop:
            held["champion_drop"] = (
                f"champion {metric} fell from {registered:.4f} to {champ_score:.4f} on this data (more than "
                f"{max_champion_drop}); not promoted automatically: check the source, then move the alias by hand"
            )
        if held:
            alias = CHALLENGER
            compared["promotion_rules"] = list(held)
            compared["promotion_held"] = "; ".join(held.values())
    tracker.set_registered_model_alias(name, alias, candidate["model_version"])
    against = (
        ""
        if not compared
        else f" against champion version={compared['champion_version']} "
        f"{metric}={compared[f'champion_{metric}']:.4f} ({compared['champion_metric_source']})"
    )
    if alias == CHAMPION:
        logger.info(
            "promoted model=%s version=%s alias=champion %s=%.4f%s",
            name,
            candidate["model_version"],
            metric,
            candidate["metrics"][metric],
            against,
        )
    else:
        logger.info(
            "not promoted model=%s version=%s alias=challenger %s=%.4f%s rules=%s: %s",
            name,
            candidate["model_version"],
            metric,
            candidate["metrics"][metric],
            against,
            ",".join(held),
            compared["promotion_held"],
        )
    return dict(candidate, alias=alias, **compared)
