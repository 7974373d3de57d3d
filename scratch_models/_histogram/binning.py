"""Quantile binning of the tree family: each feature cut once into at most 255 bins.

Histogram split finding (LightGBM, Ke et al., NeurIPS 2017; XGBoost's ``hist``
method, Chen & Guestrin, KDD 2016, sec. 3.3) works on small integer codes instead of
sorted values: this module computes the per-feature quantile edges and the ``uint8``
codes the grower scans.
"""

from __future__ import annotations

import numpy as np

#: Largest number of bins per feature (codes fit in uint8).
MAX_BINS = 255
#: Rows used to estimate quantile bin edges; more rows barely move the edges.
_EDGE_SAMPLE = 200_000


class BinMapper:
    """Per-feature quantile bin edges and the ``uint8`` codes of a matrix.

    A value ``x`` of feature ``f`` gets code ``searchsorted(edges[f], x, "left")``,
    so ``code <= b`` exactly when ``x <= edges[f][b]``: a split found on codes is
    the real-valued split ``x <= edges[f][b]`` at prediction time.

    Parameters
    ----------
    max_bins : int, default 255
        At most this many bins per feature (2..255).
    rng : numpy.random.Generator or None
        Draws the row sample used for quantiles when ``n_samples > 200_000``.
    """

    def __init__(self, max_bins: int = MAX_BINS, rng: np.random.Generator | None = None) -> None:
        if not 2 <= int(max_bins) <= MAX_BINS:
            raise ValueError(f"max_bins: expected an int in [2, {MAX_BINS}], got {max_bins!r}")
        self.max_bins = int(max_bins)
        self.rng = rng

    def fit(self, X: np.ndarray) -> BinMapper:
        """Compute edges from ``X`` of shape (n_samples, n_features), float64."""
        n = X.shape[0]
        if n > _EDGE_SAMPLE:
            rng = self.rng if self.rng is not None else np.random.default_rng(0)
            sample = X[np.sort(rng.choice(n, _EDGE_SAMPLE, replace=False))]
        else:
            sample = X
        qs = np.linspace(0.0, 1.0, self.max_bins + 1)[1:-1]
        self.edges = []
        for col in sample.T:
            u = np.unique(col)
            if u.shape[0] <= self.max_bins:
                # Few distinct values: one bin each, cut half-way between neighbours.
                edges = (u[:-1] + u[1:]) / 2.0
            else:
                edges = np.unique(np.quantile(col, qs, method="midpoint"))
            self.edges.append(edges.astype(np.float64))
        self.n_bins = np.array([e.shape[0] + 1 for e in self.edges], dtype=np.int64)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Feature-major codes of ``X``: ndarray of shape (n_features, n_samples), uint8.

        Feature-major so that one feature's codes of a set of rows are one
        contiguous gather (histograms are built feature by feature).
        """
        n = X.shape[0]
        codes = np.empty((X.shape[1], n), dtype=np.uint8)
        step = 1 << 16  # row blocks: a transposed block is contiguous per feature and stays in cache
        for a in range(0, n, step):
            block = np.ascontiguousarray(X[a : a + step].T)
            for f, edges in enumerate(self.edges):
                codes[f, a : a + step] = np.searchsorted(edges, block[f], side="left")
        return codes
