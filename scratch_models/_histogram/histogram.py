"""Per-node histograms of row statistics over binned features.

A node's histogram holds, for every (candidate feature, bin), the sum of the row
statistics (class weights, ``(w, w*y)`` or gradient and hessian) of its rows in that
bin; split finding then scans per-bin sums instead of rows (LightGBM, Ke et al.,
NeurIPS 2017, Algorithm 1). The grower builds only the smaller child of each split
here and gets the other by subtraction from the parent.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np

#: Up to this many (row, feature) pairs a histogram is one bincount, above it one per feature.
_SMALL_BUILD = 1 << 18


def build_histogram(
    codes: np.ndarray,
    stats: np.ndarray,
    rows: np.ndarray,
    local: np.ndarray,
    n_nodes: int,
    feats: np.ndarray,
    per_node: bool,
    col_off: np.ndarray,
    width: int,
    n_bins: np.ndarray,
    usable: np.ndarray,
    labels: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    pool: Executor | None = None,
) -> np.ndarray:
    """Histogram of ``stats`` over (node, packed bin), built feature by feature.

    ``codes`` is feature-major (n_features, n_samples). ``feats`` is (k,) when
    every node shares its candidate features, else (n_nodes, k); candidate ``j``'s
    bins start at ``col_off[j]`` within a node's ``width`` cells. Features not
    ``usable`` (column subsampling) are left empty. Returns ndarray of shape
    (n_nodes, width, n_stats), float64. With ``labels`` and ``weights`` (n_samples,)
    the statistics must be ``weights * one_hot(labels)`` (classification trees). A
    ``pool`` builds the features of a large shared-candidate histogram in parallel.
    """
    S = stats.shape[1]
    ln = local.astype(np.intp)
    if per_node:
        # One gather of every (row, candidate) code and one key per pair: a bincount
        # per statistic (per class label with one-hot statistics) instead of one per
        # (candidate, statistic), whose node x width outputs dominate at deep levels.
        k = feats.shape[1]
        B = int(width // k)
        key = codes[feats[ln], rows[:, None]].astype(np.intp)  # (r, k)
        key += (ln * width)[:, None]
        key += (np.arange(k, dtype=np.intp) * B)[None, :]
        key = key.ravel()
        if labels is not None and weights is not None:
            # Statistics are weight x one-hot(label): the label is the fastest key axis,
            # so one weighted bincount fills the (node, cell, class) histogram directly.
            key *= S
            key += np.repeat(labels[rows], k)
            h = np.bincount(key, weights=np.repeat(weights[rows], k), minlength=n_nodes * width * S)
            return h.reshape(n_nodes, width, S)
        out = np.empty((n_nodes, width, S))
        for s_ in range(S):
            out[:, :, s_] = np.bincount(key, weights=np.repeat(stats[rows, s_], k), minlength=n_nodes * width).reshape(
                n_nodes, width
            )
        return out
    out = np.zeros((n_nodes, width, S))
    st = [np.ascontiguousarray(stats[rows, s_]) for s_ in range(S)]
    if rows.shape[0] * feats.shape[0] <= _SMALL_BUILD:
        # Few rows: one bincount over all (feature, row) pairs beats a per-feature loop.
        use = np.flatnonzero(usable[feats])
        key = codes[feats[use]][:, rows].astype(np.intp)
        key += col_off[use][:, None]
        if n_nodes > 1:
            key += (ln * width)[None, :]
        key = key.ravel()
        flat = np.empty((S, n_nodes * width))
        for s_ in range(S):
            flat[s_] = np.bincount(key, weights=np.tile(st[s_], use.shape[0]), minlength=n_nodes * width)
        return flat.reshape(S, n_nodes, width).transpose(1, 2, 0)

    def one_feature(j: int) -> None:
        f = feats[j]
        nb = int(n_bins[f])
        key = codes[f, rows].astype(np.intp)
        if n_nodes > 1:
            key += ln * nb
        for s_ in range(S):
            h = np.bincount(key, weights=st[s_], minlength=n_nodes * nb)
            out[:, col_off[j] : col_off[j] + nb, s_] = h.reshape(n_nodes, nb)

    todo = [j for j, f in enumerate(feats) if usable[f]]
    if pool is not None and len(todo) > 1:
        # Features fill disjoint cells; numpy releases the GIL in the gathers and bincounts.
        list(pool.map(one_feature, todo))
    else:
        for j in todo:
            one_feature(j)
    return out
