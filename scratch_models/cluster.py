"""Cluster-then-score classifiers: k-means and Ward agglomerative clustering.

Each model partitions the feature space into ``k`` clusters, scores every cluster
by the smoothed class rates of the training rows that fall in it (the churn rate,
for the Telco task), and scores a new row by its nearest cluster centroid, so
prediction is one ``(n, k)`` distance matrix however the clusters were found.
``k`` is chosen among candidates by hold-out ROC-AUC (log loss for more than two
classes) on a stratified validation split of the training rows, then the model is
refitted on all of them.

* k-means: Lloyd's algorithm (Lloyd, "Least squares quantization in PCM", IEEE
  Trans. Inf. Theory 28, 1982) from k-means++ seeds (Arthur & Vassilvitskii,
  "k-means++: the advantages of careful seeding", SODA 2007), best of ``n_init``.
* Agglomerative: Ward's minimum-variance linkage (Ward, "Hierarchical grouping to
  optimize an objective function", JASA 58, 1963) via the Lance-Williams update
  (Lance & Williams, 1967) and the nearest-neighbour chain (Murtagh, "A survey of
  recent advances in hierarchical clustering algorithms", Computer Journal 26, 1983;
  Muellner, "Modern hierarchical, agglomerative clustering algorithms", 2011), on a
  bounded random sample so memory is O(max_samples^2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models.base import BaseModel, ClassifierMixin
from scratch_models.model_selection import stratified_holdout
from scratch_models.validation import check_X_y

#: Default numbers of clusters tried on the validation split.
DEFAULT_K_CANDIDATES = (2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)


def _sq_dist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, shape (n_rows, n_centres), clipped at 0."""
    d = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(d, 0.0)


def _auc(y01: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic with average ranks for ties."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    edges = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [s.shape[0]]])
    ranks = np.empty(s.shape[0])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    pos = y01.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _kmeans_pp(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds with greedy local trials (Arthur & Vassilvitskii 2007, sec. 5)."""
    n = X.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, X.shape[1]))
    centres[0] = X[rng.integers(n)]
    closest = _sq_dist(X, centres[:1])[:, 0]
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:
            centres[c:] = X[rng.integers(n, size=k - c)]
            break
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        d_cand = np.minimum(closest[:, None], _sq_dist(X, X[cand]))
        best = int(np.argmin(d_cand.sum(axis=0)))
        centres[c] = X[cand[best]]
        closest = d_cand[:, best]
    return centres


def _lloyd(X: np.ndarray, centres: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations; returns (centres, labels, inertia)."""
    n, k = X.shape[0], centres.shape[0]
    x_sq = np.einsum("ij,ij->i", X, X)
    tol_abs = tol * float(X.var(axis=0).mean())
    rows = np.arange(n)
    for _ in range(max_iter):
        # ||x||^2 is constant per row, so the nearest centre needs only -2 x.c + ||c||^2.
        part = np.einsum("ij,ij->i", centres, centres)[None, :] - 2.0 * (X @ centres.T)
        labels = np.argmin(part, axis=1)
        counts = np.bincount(labels, minlength=k)
        onehot = np.zeros((n, k))
        onehot[rows, labels] = 1.0
        new = (onehot.T @ X) / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            # Re-seed empty clusters at the rows farthest from their centre.
            far = np.argsort(-(part[rows, labels] + x_sq))[: empty.size]
            new[empty] = X[far]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol_abs:
            break
    d = _sq_dist(X, centres)
    labels = np.argmin(d, axis=1)
    return centres, labels, float(d[rows, labels].sum())


def _kmeans(X: np.ndarray, k: int, n_init: int, max_iter: int, tol: float, rng: np.random.Generator) -> np.ndarray:
    """Best-of-``n_init`` k-means centres, shape (k, n_features)."""
    best, _, best_inertia = _lloyd(X, _kmeans_pp(X, k, rng), max_iter, tol)
    for _ in range(max(1, n_init) - 1):
        centres, _, inertia = _lloyd(X, _kmeans_pp(X, k, rng), max_iter, tol)
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def ward_merges(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ward merges of the rows of ``X`` by the nearest-neighbour chain.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64

    Returns
    -------
    pairs : ndarray of shape (n_samples - 1, 2), int64
        Representative row indices of the two clusters merged, by increasing height.
    heights : ndarray of shape (n_samples - 1,), float64
        Ward's merge cost ``2 n_a n_b / (n_a + n_b) ||c_a - c_b||^2`` (Lance-Williams
        form on squared Euclidean distances).
    """
    n = X.shape[0]
    D = _sq_dist(X, X)
    np.fill_diagonal(D, np.inf)
    size = np.ones(n)
    pairs = np.empty((max(n - 1, 0), 2), dtype=np.int64)
    heights = np.empty(max(n - 1, 0))
    chain: list[int] = []
    remaining = list(range(n))  # candidates to start a new chain
    m = 0
    while m < n - 1:
        if not chain:
            while size[remaining[-1]] == 0:
                remaining.pop()
            chain.append(remaining[-1])
        a = chain[-1]
        row = D[a]
        b = int(np.argmin(row))
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            dab = float(D[a, b])
            na, nb = size[a], size[b]
            new = ((na + size) * D[a] + (nb + size) * D[b] - size * dab) / (na + nb + size)
            new[a] = np.inf
            new[b] = np.inf
            new[size == 0] = np.inf
            D[a, :] = new
            D[:, a] = new
            D[b, :] = np.inf
            D[:, b] = np.inf
            size[a] = na + nb
            size[b] = 0.0
            pairs[m] = (a, b)
            heights[m] = dab
            m += 1
        else:
            chain.append(b)
    order = np.argsort(heights, kind="mergesort")
    return pairs[order], heights[order]


def cut_merges(pairs: np.ndarray, n: int, k: int) -> np.ndarray:
    """Flat labels ``0..k-1`` of ``n`` rows after applying the first ``n - k`` merges."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs[: max(n - k, 0)].tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    roots = np.array([find(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


class _ClusterClassifier(ClassifierMixin, BaseModel):
    """Shared k selection, cluster scoring and nearest-centroid prediction."""

    # Hyperparameters both subclasses' ``__init__`` store.
    k_candidates: list[int] | None
    smoothing: float
    validation_fraction: float
    random_state: int | None

    def _centres(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _candidate_centres(self, X: np.ndarray, ks: list[int], rng: np.random.Generator) -> dict[int, np.ndarray]:
        return {k: self._centres(X, k, rng) for k in ks}

    def _cluster_proba(self, X: np.ndarray, y_idx: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Smoothed class rates per cluster (m-estimate toward the class prior)."""
        n_classes = self.classes_.shape[0]
        labels = np.argmin(_sq_dist(X, centres), axis=1)
        counts = np.zeros((centres.shape[0], n_classes))
        np.add.at(counts, (labels, y_idx), 1.0)
        prior = np.bincount(y_idx, minlength=n_classes) / y_idx.shape[0]
        m = float(self.smoothing)
        return (counts + m * prior) / (counts.sum(axis=1, keepdims=True) + m)

    def _score(self, y_idx: np.ndarray, proba: np.ndarray) -> float:
        if proba.shape[1] == 2:
            return _auc(y_idx, proba[:, 1])
        return float(np.mean(np.log(np.maximum(proba[np.arange(y_idx.shape[0]), y_idx], 1e-15))))

    def fit(self, X: Any, y: Any) -> _ClusterClassifier:
        """Choose ``k`` on a validation split, then cluster all of ``X`` and score the clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), float64
        y : array-like of shape (n_samples,)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes or values, a single class, or bad hyperparameters.
        """
        X, y = check_X_y(X, y)
        y_idx = self._encode_y(y)
        rng = np.random.default_rng(self.random_state)
        ks = sorted({int(k) for k in (self.k_candidates or DEFAULT_K_CANDIDATES)})
        if not ks or ks[0] < 1:
            raise ValueError(f"k_candidates: expected positive ints, got {self.k_candidates!r}")
        if not 0.0 < float(self.validation_fraction) < 1.0:
            raise ValueError(f"validation_fraction: expected in (0, 1), got {self.validation_fraction!r}")
        fit_rows, val_rows = stratified_holdout(y_idx, float(self.validation_fraction), rng)
        ks = [k for k in ks if k <= max(1, fit_rows.shape[0] // 2)] or [1]
        self.validation_scores_ = []
        if len(ks) > 1 and val_rows.shape[0] > 0:
            Xf, yf = X[fit_rows], y_idx[fit_rows]
            for centres in self._candidate_centres(Xf, ks, rng).values():
                table = self._cluster_proba(Xf, yf, centres)
                val_labels = np.argmin(_sq_dist(X[val_rows], centres), axis=1)
                self.validation_scores_.append(self._score(y_idx[val_rows], table[val_labels]))
            k_best = ks[int(np.argmax(self.validation_scores_))]
        else:
            k_best = ks[0]
        self.k_candidates_ = ks
        self.n_clusters_ = int(k_best)
        self.cluster_centers_ = self._centres(X, k_best, rng)
        self.cluster_proba_ = self._cluster_proba(X, y_idx, self.cluster_centers_)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Squared distances to the cluster centroids, shape (n_samples, n_clusters_), float64."""
        X = self._validate_X(X)
        return _sq_dist(X, self.cluster_centers_)

    def predict_cluster(self, X: Any) -> np.ndarray:
        """Nearest centroid per row, shape (n_samples,), int64."""
        return np.argmin(self.transform(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class rates of each row's nearest cluster, shape (n_samples, n_classes), float64; rows sum to 1."""
        cluster = self.predict_cluster(X)  # validates (and checks fitted) first
        return self.cluster_proba_[cluster].copy()


class KMeansClassifier(_ClusterClassifier):
    """k-means clusters scored by their smoothed training class rates (churn rate).

    Parameters
    ----------
    k_candidates : list of int or None, default None
        Numbers of clusters tried on the validation split; ``None`` means
        ``DEFAULT_K_CANDIDATES`` (2 to 60).
    n_init : int, default 3
        k-means++ restarts; the lowest inertia wins.
    max_iter : int, default 50
        Lloyd iterations per restart at most.
    tol : float, default 1e-4
        Stop when the summed squared centre shift is below ``tol`` times the mean
        feature variance.
    smoothing : float, default 10.0
        m-estimate weight pulling each cluster's class rates toward the prior,
        ``(count + m * prior) / (size + m)``.
    validation_fraction : float, default 0.25
        Share of each class held out to choose ``k``.
    random_state : int or None, default None

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters_, n_features), float64
    cluster_proba_ : ndarray of shape (n_clusters_, n_classes), float64
    n_clusters_ : int
        Chosen ``k``.
    k_candidates_ : list of int
    validation_scores_ : list of float
        Hold-out AUC (binary) or mean log-likelihood per candidate.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    References
    ----------
    Lloyd, 1982; Arthur & Vassilvitskii, SODA 2007.
    """

    def __init__(
        self,
        k_candidates: list[int] | None = None,
        n_init: int = 3,
        max_iter: int = 50,
        tol: float = 1e-4,
        smoothing: float = 10.0,
        validation_fraction: float = 0.25,
        random_state: int | None = None,
    ) -> None:
        self.k_candidates = k_candidates
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _centres(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return _kmeans(X, k, int(self.n_init), int(self.max_iter), float(self.tol), rng)


class AgglomerativeClassifier(_ClusterClassifier):
    """Ward-linkage clusters of a random sample, scored by smoothed class rates.

    The hierarchy is built once per fit stage on at most ``max_samples`` rows
    (O(max_samples^2) memory, about 32 MB at 2,000); cutting it at ``k`` gives
    centroids, and every training row (not only the sample) is assigned to its
    nearest centroid to estimate the cluster's class rates. New rows are scored by
    nearest centroid, so prediction is linear in the number of rows.

    Parameters
    ----------
    k_candidates : list of int or None, default None
        Numbers of clusters tried on the validation split; ``None`` means
        ``DEFAULT_K_CANDIDATES`` (2 to 60).
    max_samples : int, default 2000
        Rows clustered hierarchically.
    smoothing : float, default 10.0
        m-estimate weight toward the class prior.
    validation_fraction : float, default 0.25
    random_state : int or None, default None
        Seed of the sample and of the validation split.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters_, n_features), float64
    cluster_proba_ : ndarray of shape (n_clusters_, n_classes), float64
    n_clusters_ : int
    k_candidates_ : list of int
    validation_scores_ : list of float
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    References
    ----------
    Ward, 1963; Lance & Williams, "A general theory of classificatory sorting
    strategies", Computer Journal 9, 1967; Murtagh, 1983; Muellner, 2011.
    """

    def __init__(
        self,
        k_candidates: list[int] | None = None,
        max_samples: int = 2000,
        smoothing: float = 10.0,
        validation_fraction: float = 0.25,
        random_state: int | None = None,
    ) -> None:
        self.k_candidates = k_candidates
        self.max_samples = max_samples
        self.smoothing = smoothing
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _candidate_centres(self, X: np.ndarray, ks: list[int], rng: np.random.Generator) -> dict[int, np.ndarray]:
        n = X.shape[0]
        m = min(n, int(self.max_samples))
        if m < 1:
            raise ValueError(f"max_samples: expected >= 1, got {self.max_samples!r}")
        sample = X[np.sort(rng.choice(n, size=m, replace=False))]
        pairs, _ = ward_merges(sample)
        out = {}
        for k in ks:
            labels = cut_merges(pairs, m, min(k, m))
            kk = int(labels.max()) + 1
            counts = np.bincount(labels, minlength=kk)
            onehot = np.zeros((m, kk))
            onehot[np.arange(m), labels] = 1.0
            out[k] = (onehot.T @ sample) / counts[:, None]
        return out

    def _centres(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return self._candidate_centres(X, [k], rng)[k]
