"""Ward linkage and k-means internals against SciPy / by construction."""

from __future__ import annotations

import numpy as np
import pytest

from scratch_models.cluster import AgglomerativeClassifier, KMeansClassifier, cut_merges, ward_merges


def test_ward_merges_match_scipy():
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    from sklearn.metrics import adjusted_rand_score

    X = np.random.default_rng(0).normal(size=(300, 5))
    pairs, heights = ward_merges(X)
    Z = hierarchy.linkage(X, "ward")
    # SciPy reports sqrt of the Lance-Williams (squared-distance) Ward cost.
    np.testing.assert_allclose(np.sqrt(heights), Z[:, 2], rtol=1e-9)
    for k in (2, 5, 17):
        labels = cut_merges(pairs, 300, k)
        assert labels.max() + 1 == k
        assert adjusted_rand_score(labels, hierarchy.fcluster(Z, k, "maxclust")) == 1.0


def test_agglomerative_samples_at_most_max_samples_and_picks_a_candidate():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(900, 4))
    y = (X[:, 0] > 0).astype(int)
    model = AgglomerativeClassifier(k_candidates=[2, 4, 8], max_samples=150, random_state=0).fit(X, y)
    assert model.n_clusters_ in (2, 4, 8)
    assert model.cluster_centers_.shape == (model.n_clusters_, 4)
    assert len(model.validation_scores_) == 3


def test_kmeans_separates_blobs_and_scores_by_rate():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.vstack([c + rng.normal(scale=0.3, size=(100, 2)) for c in centres])
    y = np.repeat([0, 1, 0], 100)
    model = KMeansClassifier(k_candidates=[3], smoothing=0.0, random_state=0).fit(X, y)
    proba = model.predict_proba(centres)
    np.testing.assert_allclose(proba[:, 1], [0.0, 1.0, 0.0])
