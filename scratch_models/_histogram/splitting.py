"""Split criteria and the search for each node's best split.

A :class:`Criterion` scores a candidate split from the summed statistics of its
left child, right child and parent; :func:`best_splits_dense` scans a level's
histograms (cumulative sums per feature) and :func:`best_splits_sparse` the occupied
(feature, bin) cells of many small nodes. Both return, per node, the gain, feature,
bin and left statistics of the best valid split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Criterion:
    """How a node's row statistics score a split.

    ``gain(L, R, P)`` takes summed statistics of left child, right child and parent
    (last axis = statistic) and returns the split's gain, larger is better;
    ``weight(S)`` is the node size used by ``min_samples_leaf`` /
    ``min_child_weight``; ``value(S)`` is the node's stored output.
    """

    gain: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    weight: Callable[[np.ndarray], np.ndarray]
    value: Callable[[np.ndarray], np.ndarray]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.where(b > 0, out, 0.0)


def _lastsum(S: np.ndarray) -> np.ndarray:
    """Sum over the (short) statistics axis; numpy reductions over a last axis of
    2-3 elements are many times slower than adding the slices."""
    out = S[..., 0].copy()
    for i in range(1, S.shape[-1]):
        out += S[..., i]
    return out


def gini_criterion() -> Criterion:
    """Gini impurity decrease (Breiman et al., *Classification and Regression Trees*, 1984).

    Statistics are per-class sample weights. With ``n`` the node weight and ``c_k``
    its class weights, ``n * gini = n - sum_k c_k^2 / n``; the (unnormalised)
    decrease is therefore ``sum c_L^2/n_L + sum c_R^2/n_R - sum c_P^2/n_P``.
    """

    def score(S: np.ndarray) -> np.ndarray:
        return _safe_div(_lastsum(S * S), _lastsum(S))

    return Criterion(
        gain=lambda L, R, P: score(L) + score(R) - score(P),
        weight=_lastsum,
        value=lambda S: _safe_div(S, _lastsum(S)[..., None]),
    )


def entropy_criterion() -> Criterion:
    """Information-gain (Shannon entropy) decrease, weighted by node size."""

    def n_entropy(S: np.ndarray) -> np.ndarray:
        n = _lastsum(S)
        with np.errstate(divide="ignore", invalid="ignore"):
            clogc = _lastsum(np.where(S > 0, S * np.log(np.where(S > 0, S, 1.0)), 0.0))
            nlogn = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0)), 0.0)
        return nlogn - clogc

    return Criterion(
        gain=lambda L, R, P: n_entropy(P) - n_entropy(L) - n_entropy(R),
        weight=_lastsum,
        value=lambda S: _safe_div(S, _lastsum(S)[..., None]),
    )


def squared_error_criterion() -> Criterion:
    """Variance reduction; statistics are ``(w, w*y)``: ``n var`` decrease is
    ``s_L^2/n_L + s_R^2/n_R - s_P^2/n_P``."""

    def score(S: np.ndarray) -> np.ndarray:
        return _safe_div(S[..., 1] ** 2, S[..., 0])

    return Criterion(
        gain=lambda L, R, P: score(L) + score(R) - score(P),
        weight=lambda S: S[..., 0],
        value=lambda S: _safe_div(S[..., 1], S[..., 0])[..., None],
    )


def newton_criterion(reg_lambda: float) -> Criterion:
    """XGBoost's second-order split gain (Chen & Guestrin 2016, eq. 7), statistics ``(g, h)``.

    ``gain = 0.5 [G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G_P^2/(H_P+lambda)]``
    (``gamma`` is applied by the grower as the minimum gain); the node value is the
    optimal weight ``-G / (H + lambda)`` (eq. 5).
    """
    lam = float(reg_lambda)

    def score(S: np.ndarray) -> np.ndarray:
        # With lambda = 0 an empty child divides by zero; such splits are masked out anyway.
        with np.errstate(divide="ignore", invalid="ignore"):
            return S[..., 0] ** 2 / (S[..., 1] + lam)

    return Criterion(
        gain=lambda L, R, P: 0.5 * (score(L) + score(R) - score(P)),
        weight=lambda S: S[..., 1],
        value=lambda S: (-_safe_div(S[..., 0], S[..., 1] + lam))[..., None],
    )


def best_splits_sparse(
    codes: np.ndarray,
    stats: np.ndarray,
    rows: np.ndarray,
    local: np.ndarray,
    m: int,
    feats: np.ndarray,
    per_node: bool,
    B: int,
    P: np.ndarray,
    criterion: Criterion,
    min_leaf: float,
    usable: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best split of every node from its occupied (feature, bin) cells only.

    Deep levels of unpruned trees have many small nodes: a dense histogram would
    be mostly empty cells, so the occupied cells are found by sorting the row keys
    instead. Returns ``gain (m,)`` (-inf when no valid split), ``feature (m,)``,
    ``bin (m,)`` and left statistics ``(m, n_stats)``.
    """
    k = feats.shape[-1]
    sub = codes[feats[local], rows[:, None]] if per_node else codes[feats[None, :], rows[:, None]]
    key = sub.astype(np.int64)
    key += (np.arange(k, dtype=np.int64) * B)[None, :]
    key += (local.astype(np.int64) * (k * B))[:, None]
    cells, inv = np.unique(key.ravel(), return_inverse=True)
    U = cells.shape[0]
    st = stats[rows]
    cs = np.empty((U, stats.shape[1]))
    for s_ in range(stats.shape[1]):
        cs[:, s_] = np.bincount(inv, weights=np.repeat(st[:, s_], k), minlength=U)
    seg = cells // B  # node * k + j
    node = seg // k
    new_seg = np.empty(U, dtype=bool)
    new_seg[0] = True
    new_seg[1:] = seg[1:] != seg[:-1]
    C = np.cumsum(cs, axis=0)
    start = np.maximum.accumulate(np.where(new_seg, np.arange(U), 0))
    Cpad = np.vstack([np.zeros((1, cs.shape[1])), C])
    L = C - Cpad[start]
    Pn = P[node]
    R = Pn - L
    g = criterion.gain(L, R, Pn)
    wL, wR = criterion.weight(L), criterion.weight(R)
    last = np.empty(U, dtype=bool)
    last[-1] = True
    last[:-1] = new_seg[1:]
    valid = ~last & (wL >= min_leaf) & (wR >= min_leaf) & (wL > 1e-12) & (wR > 1e-12)
    if not per_node:
        valid &= usable[feats[seg % k]]
    g = np.where(valid, g, -np.inf)
    # Per-node argmax: sort cells by (node, -gain) and take each node's first.
    order = np.lexsort((-g, node))
    first = np.empty(U, dtype=bool)
    first[0] = True
    first[1:] = node[order][1:] != node[order][:-1]
    pick = order[first]
    best_gain = np.full(m, -np.inf)
    f_best = np.zeros(m, dtype=np.int64)
    b_best = np.zeros(m, dtype=np.int64)
    Lbest = np.zeros((m, stats.shape[1]))
    nd = node[pick]
    j = seg[pick] % k
    best_gain[nd] = g[pick]
    f_best[nd] = feats[nd, j] if per_node else feats[j]
    b_best[nd] = cells[pick] % B
    Lbest[nd] = L[pick]
    return best_gain, f_best, b_best, Lbest


def best_splits_dense(
    hist: np.ndarray,
    P: np.ndarray,
    feats: np.ndarray,
    per_node: bool,
    seg_start: np.ndarray,
    pos_j: np.ndarray,
    pos_b: np.ndarray,
    n_bins: np.ndarray,
    shared_valid: np.ndarray | None,
    criterion: Criterion,
    min_leaf: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best split of every node of a dense histogram block ``hist`` (m, width, n_stats).

    Cell ``c`` of a node belongs to candidate ``pos_j[c]``, bin ``pos_b[c]``; a split
    at cell ``c`` sends bins ``<= pos_b[c]`` left. Returns ``gain (m,)`` (-inf when no
    valid split), ``feature (m,)``, ``bin (m,)`` and left statistics ``(m, n_stats)``.
    """
    m = hist.shape[0]
    C = np.cumsum(hist, axis=1)  # (m, width, S)
    # Left sums: cumulative sum restarted at each feature's first cell.
    before = np.concatenate([np.zeros((m, 1, C.shape[2])), C], axis=1)[:, seg_start]
    Lcum = C - before
    Rcum = P[:, None, :] - Lcum
    g = criterion.gain(Lcum, Rcum, P[:, None, :])  # (m, width)
    wL, wR = criterion.weight(Lcum), criterion.weight(Rcum)
    # The 1e-12 guard keeps float round-off from making an empty child look non-empty.
    valid = (wL >= min_leaf) & (wR >= min_leaf) & (wL > 1e-12) & (wR > 1e-12)
    if per_node:
        valid &= pos_b[None, :] < (n_bins[feats] - 1)[:, pos_j]
    elif shared_valid is not None:
        valid &= shared_valid[None, :]
    g = np.where(valid, g, -np.inf)
    best = np.argmax(g, axis=1)
    best_gain = g[np.arange(m), best]
    j_best, b_best = pos_j[best], pos_b[best]
    f_best = feats[np.arange(m), j_best] if per_node else feats[j_best]
    return best_gain, f_best, b_best, Lcum[np.arange(m), best]
