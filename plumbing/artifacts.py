"""Downloading and verifying model artifacts from the MLflow artifact store."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from plumbing.mlflow_rest import download_run_artifact
from schemas.registry import ARTIFACT_PATH
from scratch_models.persistence import sha256_file
from scratch_models.pipeline import ScoringPipeline

logger = logging.getLogger(__name__)


def version_artifact_uri(version: Any) -> str:  # mlflow ModelVersion
    """``runs:/<run_id>/<artifact_path>`` of a registered model version's pipeline.

    Parameters
    ----------
    version : mlflow.entities.model_registry.ModelVersion
        Its ``artifact_path`` tag names the file in the run (default
        :data:`schemas.registry.ARTIFACT_PATH`).

    Returns
    -------
    str
    """
    return f"runs:/{version.run_id}/{version.tags.get('artifact_path', ARTIFACT_PATH)}"


class ArtifactVerificationError(RuntimeError):
    """A downloaded artifact's SHA-256 differs from the announced one."""


def download_pipeline(
    tracking_uri: str, artifact_uri: str, sha256: str, dst_dir: str | Path | None = None
) -> ScoringPipeline:
    """Download a scoring pipeline, verify its SHA-256, and load it (never unpickled).

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking server; artifacts come through its proxy.
    artifact_uri : str
        e.g. ``runs:/<run_id>/model/pipeline.npz``.
    sha256 : str
        Expected hex digest.
    dst_dir : path, optional
        Where to download; the file stays there, the caller's to keep or remove. By
        default a temporary directory, removed before returning (the pipeline is read
        into memory, so nothing refers to the file afterwards).

    Returns
    -------
    ScoringPipeline

    Raises
    ------
    ArtifactVerificationError
        If the digest differs.
    plumbing.mlflow_rest.MlflowRestError
        If MLflow could not be asked or has no such run or file.
    scratch_models.persistence.ArtifactError
        If the file is not a valid scoring pipeline.
    """
    if dst_dir is not None:
        return _download_and_load(tracking_uri, artifact_uri, sha256, Path(dst_dir))
    # Every hot reload and promotion check downloads one: a directory left behind per call
    # would fill /tmp over the life of a worker.
    with tempfile.TemporaryDirectory(prefix="churn-artifact-") as tmp:
        return _download_and_load(tracking_uri, artifact_uri, sha256, Path(tmp))


def _download_and_load(tracking_uri: str, artifact_uri: str, sha256: str, dst: Path) -> ScoringPipeline:
    local = download_run_artifact(tracking_uri, artifact_uri, dst)  # REST: no mlflow import in a scoring process
    digest = sha256_file(local)
    if digest != sha256:
        raise ArtifactVerificationError(
            f"{artifact_uri}: sha256 {digest[:12]}... does not match announced {sha256[:12]}..."
        )
    return ScoringPipeline.load(local)
