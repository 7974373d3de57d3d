"""Downloading a scoring pipeline: verified, loaded, and no temporary directory left behind.

The artifact comes from a local directory through MLflow's own local artifact
repository (``file:`` URI), the same code path as the tracking server's proxy minus
the HTTP hop: no server, nothing mocked.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from plumbing.artifacts import ArtifactVerificationError, download_pipeline, version_artifact_uri
from schemas.registry import ARTIFACT_PATH
from scratch_models import LogisticRegression, ScoringPipeline, TabularPreprocessor
from scratch_models.persistence import sha256_file


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> tuple[str, str, ScoringPipeline]:
    """``(artifact_uri, sha256, pipeline)`` of a small pipeline saved as a run would log it."""
    rng = np.random.default_rng(0)
    cols = {"tenure": rng.uniform(0, 72, 200), "contract": rng.choice(["Month-to-month", "Two year"], 200)}
    y = (cols["tenure"] < 20).astype(int)
    pre = TabularPreprocessor(["tenure"], ["contract"]).fit(cols)
    pipeline = ScoringPipeline(pre, LogisticRegression(C=1.0).fit(pre.transform(cols), y), threshold=0.5)
    path = pipeline.save(tmp_path_factory.mktemp("run") / ARTIFACT_PATH)
    return path.as_uri(), sha256_file(path), pipeline


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary-files directory of this test's own, so other processes' files do not count."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_download_leaves_no_temporary_directory(artifact, private_tmp):
    uri, sha, pipeline = artifact
    before = sorted(private_tmp.iterdir())
    for _ in range(3):
        back = download_pipeline("file:///unused", uri, sha)
    assert sorted(private_tmp.iterdir()) == before == []
    cols = {"tenure": np.array([3.0, 60.0]), "contract": np.array(["Month-to-month", "Two year"])}
    np.testing.assert_array_equal(back.predict_proba(cols), pipeline.predict_proba(cols))  # loaded before cleanup


def test_a_refused_download_leaves_no_temporary_directory(artifact, private_tmp):
    uri, _, _ = artifact
    with pytest.raises(ArtifactVerificationError, match="does not match"):
        download_pipeline("file:///unused", uri, "0" * 64)
    assert list(private_tmp.iterdir()) == []


def test_download_into_a_callers_directory_keeps_the_file(artifact, tmp_path):
    uri, sha, _ = artifact
    download_pipeline("file:///unused", uri, sha, dst_dir=tmp_path / "keep")
    (kept,) = (tmp_path / "keep").rglob("*.npz")
    assert sha256_file(kept) == sha


def test_version_artifact_uri_defaults_to_the_registry_contract_path():
    class Version:  # the two attributes of an mlflow ModelVersion that matter here
        run_id = "abc123"
        tags: dict[str, str] = {}

    assert version_artifact_uri(Version()) == f"runs:/abc123/{ARTIFACT_PATH}"
    Version.tags = {"artifact_path": "other/pipeline.npz"}
    assert version_artifact_uri(Version()) == "runs:/abc123/other/pipeline.npz"
