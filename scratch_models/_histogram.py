"""Shared machinery of the tree family: quantile binning, level-wise histogram tree
growth, flat tree storage and vectorised traversal.

Histogram split finding follows LightGBM (Ke et al., "LightGBM: A Highly Efficient
Gradient Boosting Decision Tree", NeurIPS 2017) and XGBoost's ``hist`` method
(Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016, sec. 3.3):
each feature is cut once into at most 255 quantile bins stored as ``uint8``; a
node's split search then scans per-bin sums of row statistics instead of sorted
values. A child's histogram is its parent's minus its sibling's, so only the
smaller child of each split is built from rows.

Trees are grown level by level and every step of a level is one numpy operation
over all nodes of that level (no per-node or per-row Python loop).

Internal module: the estimators in ``tree``, ``forest`` and ``boosting`` are the
public interface.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest number of bins per feature (codes fit in uint8).
MAX_BINS = 255
#: Rows used to estimate quantile bin edges; more rows barely move the edges.
_EDGE_SAMPLE = 200_000
#: Up to this many (row, feature) pairs a histogram is one bincount, above it one per feature.
_SMALL_BUILD = 1 << 18
#: Histogram cells (nodes x features x bins x stats) per node chunk.
_HIST_CELLS = 1 << 24
#: Histogram cells per block of nodes whose splits are evaluated together (~1 MB: stays in cache).
_EVAL_CELLS = 1 << 17
#: Ensembles up to this depth predict through the complete-tree form.
_COMPLETE_MAX_DEPTH = 6
#: Cells (splits x rows) of the split table of one deep-traversal row chunk.
_SPLIT_TABLE_CELLS = 1 << 24


# --------------------------------------------------------------------------- binning
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


# --------------------------------------------------------------------------- criteria
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


# --------------------------------------------------------------------------- growth
@dataclass
class GrownTree:
    """One tree in flat arrays; node 0 is the root, children of a split are adjacent.

    Attributes
    ----------
    feature : ndarray of shape (n_nodes,), int32
        Split feature, -1 at leaves.
    bin : ndarray of shape (n_nodes,), int32
        Split bin: rows with ``code <= bin`` go left.
    left : ndarray of shape (n_nodes,), int32
        Left child (right child is ``left + 1``), -1 at leaves.
    value : ndarray of shape (n_nodes, n_outputs), float64
        Output of every node, internal ones included (used for path contributions).
    weight : ndarray of shape (n_nodes,), float64
        Node weight (sample weight or hessian sum).
    gain : ndarray of shape (n_nodes,), float64
        Split gain, 0 at leaves.
    row_leaf : ndarray of shape (n_rows_fitted,), int32
        Leaf reached by each row passed to the grower (order of ``rows``).
    """

    feature: np.ndarray
    bin: np.ndarray
    left: np.ndarray
    value: np.ndarray
    weight: np.ndarray
    gain: np.ndarray
    row_leaf: np.ndarray


def _build_hist(
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
        if labels is not None:
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


def _best_splits_sparse(
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


def _best_splits_dense(
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
    else:
        valid &= shared_valid[None, :]
    g = np.where(valid, g, -np.inf)
    best = np.argmax(g, axis=1)
    best_gain = g[np.arange(m), best]
    j_best, b_best = pos_j[best], pos_b[best]
    f_best = feats[np.arange(m), j_best] if per_node else feats[j_best]
    return best_gain, f_best, b_best, Lcum[np.arange(m), best]


def grow_tree(
    codes: np.ndarray,
    n_bins: np.ndarray,
    stats: np.ndarray,
    rows: np.ndarray,
    criterion: Criterion,
    *,
    max_depth: int | None,
    min_samples_split: float = 2.0,
    min_samples_leaf: float = 1.0,
    min_gain: float = 0.0,
    max_features: int | None = None,
    features: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    labels: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    pool: Executor | None = None,
) -> GrownTree:
    """Grow one tree level by level on binned data.

    Parameters
    ----------
    codes : ndarray of shape (n_features, n_samples), uint8
        Feature-major binned training matrix
        Binned training matrix (see :class:`BinMapper`).
    n_bins : ndarray of shape (n_features,), int64
        Bins used by each feature.
    stats : ndarray of shape (n_samples, n_stats), float64
        Per-row statistics summed by the histograms (already sample-weighted).
    rows : ndarray of shape (n_rows,), int64
        Rows this tree is grown on (bootstrap/subsample selection).
    criterion : Criterion
    max_depth : int or None
        None grows until leaves are pure or too small.
    min_samples_split, min_samples_leaf : float
        Minimum ``criterion.weight`` of a node to split / of each child.
    min_gain : float
        A split must have ``gain > min_gain`` (XGBoost's gamma; ``min_impurity_decrease``
        times the root weight for CART).
    max_features : int or None
        Candidate features drawn per node without replacement (random forests);
        None uses all of ``features``.
    features : ndarray of int or None
        Features this tree may use (column subsampling); None means all.
    rng : numpy.random.Generator or None
        Needed when ``max_features`` is set.
    labels, weights : ndarray of shape (n_samples,), intp and float64, optional
        Only for classification statistics ``stats = weights[:, None] * one_hot(labels)``:
        per-node histograms are then one weighted bincount (same sums, fewer passes).
    pool : concurrent.futures.Executor or None
        Threads sharing the per-feature histogram work of shared candidates (boosting).

    Returns
    -------
    GrownTree
    """
    n_features = codes.shape[0]
    B = int(n_bins.max())
    depth_limit = np.inf if max_depth is None else int(max_depth)
    allowed = np.arange(n_features) if features is None else np.asarray(features, dtype=np.int64)
    per_node = max_features is not None and int(max_features) < allowed.shape[0]
    # Column subsampling without per-node draws: histogram every feature (a plain row
    # gather is cheaper than a row x column gather) and mask the others out.
    usable = np.zeros(n_features, dtype=bool)
    usable[allowed] = True
    if not per_node:
        allowed = np.arange(n_features)
    k = int(max_features) if per_node else allowed.shape[0]

    rows = np.asarray(rows, dtype=np.int64)
    local = np.zeros(rows.shape[0], dtype=np.int64)  # frontier index of each row
    total = stats[rows].sum(axis=0)[None, :]

    # Nodes are stored level by level; the frontier is always the last level added.
    levels: list[dict[str, np.ndarray]] = []
    n_stored = 0
    row_leaf = np.full(stats.shape[0], -1, dtype=np.int32)
    row_pos = rows  # rows of the caller's selection, for row_leaf

    def add_nodes(S: np.ndarray) -> np.ndarray:
        nonlocal n_stored
        m = S.shape[0]
        levels.append(
            {
                "feature": np.full(m, -1, dtype=np.int32),
                "bin": np.zeros(m, dtype=np.int32),
                "left": np.full(m, -1, dtype=np.int32),
                "value": np.asarray(criterion.value(S), dtype=np.float64).reshape(m, -1),
                "weight": np.asarray(criterion.weight(S), dtype=np.float64),
                "gain": np.zeros(m),
            }
        )
        n_stored += m
        return np.arange(n_stored - m, n_stored)

    # Packed bin layout of a node's histogram: candidate j owns cells
    # col_off[j] : col_off[j] + width_j. Shared candidates pack their real bin counts;
    # per-node candidates (forests) use a fixed stride of B cells.
    if per_node:
        col_off = np.arange(k, dtype=np.int64) * B
        width = k * B
        pos_j = np.repeat(np.arange(k), B)
        pos_b = np.tile(np.arange(B), k)
    else:
        nb_shared = n_bins[allowed]
        col_off = np.concatenate([[0], np.cumsum(nb_shared)[:-1]]).astype(np.int64)
        width = int(nb_shared.sum())
        pos_j = np.repeat(np.arange(k), nb_shared)
        pos_b = np.arange(width) - col_off[pos_j]
        shared_valid = (pos_b < nb_shared[pos_j] - 1) & usable[pos_j]
    seg_start = col_off[pos_j]  # first cell of each cell's feature

    frontier = add_nodes(total)  # global ids of the nodes being split
    P = total  # their statistics, (m, S)
    hist = None  # their histograms when reusable, (m, width, S)
    depth = 0
    while frontier.shape[0] and rows.shape[0]:
        m = frontier.shape[0]
        w_node = criterion.weight(P)
        can = (w_node >= min_samples_split) & (w_node >= 2 * min_samples_leaf) & (depth < depth_limit)
        if not can.any():
            break
        if per_node:
            feats = np.argsort(rng.random((m, allowed.shape[0])), axis=1)[:, :k]
            feats = allowed[feats]
        else:
            feats = allowed
        n_elem = rows.shape[0] * k
        if n_elem < m * width:
            best_gain, f_best, b_best, Lbest = _best_splits_sparse(
                codes,
                stats,
                rows,
                local,
                m,
                feats,
                per_node,
                B,
                P,
                criterion,
                min_samples_leaf,
                usable,
            )
            hist = None
        else:
            S_ = stats.shape[1]
            if hist is None and not per_node:
                hist = np.empty((m, width, S_))
                # Chunk nodes so a level of a deep tree never allocates a huge histogram.
                node_step = max(1, _HIST_CELLS // (width * S_))
                bounds = np.searchsorted(local, np.arange(0, m + node_step, node_step))
                for c, n0 in enumerate(range(0, m, node_step)):
                    n1 = min(m, n0 + node_step)
                    a, b = bounds[c], bounds[c + 1]
                    hist[n0:n1] = _build_hist(
                        codes,
                        stats,
                        rows[a:b],
                        local[a:b] - n0,
                        n1 - n0,
                        feats,
                        per_node,
                        col_off,
                        width,
                        n_bins,
                        usable,
                        pool=pool,
                    )
            # Evaluate splits a cache-sized block of nodes at a time. Per-node candidates
            # (forests) are never reused by subtraction, so their block is also built
            # right here instead of scattering a level-sized histogram out of cache.
            step = max(1, _EVAL_CELLS // (width * S_))
            bounds = np.searchsorted(local, np.arange(0, m + step, step)) if per_node else None
            best_gain = np.empty(m)
            f_best = np.empty(m, dtype=np.int64)
            b_best = np.empty(m, dtype=np.int64)
            Lbest = np.empty((m, S_))
            for c, n0 in enumerate(range(0, m, step)):
                n1 = min(m, n0 + step)
                if per_node:
                    a, b = bounds[c], bounds[c + 1]
                    h = _build_hist(
                        codes,
                        stats,
                        rows[a:b],
                        local[a:b] - n0,
                        n1 - n0,
                        feats[n0:n1],
                        True,
                        col_off,
                        width,
                        n_bins,
                        usable,
                        labels,
                        weights,
                    )
                else:
                    h = hist[n0:n1]
                (best_gain[n0:n1], f_best[n0:n1], b_best[n0:n1], Lbest[n0:n1]) = _best_splits_dense(
                    h,
                    P[n0:n1],
                    feats[n0:n1] if per_node else feats,
                    per_node,
                    seg_start,
                    pos_j,
                    pos_b,
                    n_bins,
                    None if per_node else shared_valid,
                    criterion,
                    min_samples_leaf,
                )
        split = can & np.isfinite(best_gain) & (best_gain > min_gain)
        if not split.any():
            break

        sp = np.flatnonzero(split)
        n_split = sp.shape[0]
        # Children statistics, left then right per split node.
        Ls = Lbest[sp]
        Rs = P[sp] - Ls
        child_S = np.empty((2 * n_split, P.shape[1]))
        child_S[0::2] = Ls
        child_S[1::2] = Rs
        cur = levels[-1]
        child_ids = add_nodes(child_S)
        cur["feature"][sp] = f_best[sp]
        cur["bin"][sp] = b_best[sp]
        cur["left"][sp] = child_ids[0::2]
        cur["gain"][sp] = best_gain[sp]

        # Route rows: rows of unsplit nodes become leaves and leave the frontier.
        new_index = np.full(m, -1, dtype=np.int64)
        new_index[sp] = np.arange(n_split) * 2
        row_new = new_index[local]
        keep = row_new >= 0
        done = ~keep
        if done.any():
            row_leaf[rows[done]] = frontier[local[done]]
        rows, local, row_new = rows[keep], local[keep], row_new[keep]
        go_right = codes[f_best[local], rows] > b_best[local]
        local = row_new + go_right
        # Stable sort by child: a radix sort on 16-bit keys while the level is narrow enough.
        order = np.argsort(local.astype(np.uint16) if 2 * n_split <= 0xFFFF else local, kind="stable")
        rows, local = rows[order], local[order]

        # Children histograms: build the smaller child, subtract from the parent.
        counts = np.bincount(local, minlength=2 * n_split)
        if per_node or depth + 1 >= depth_limit or hist is None:
            hist = None
        else:
            left_small = counts[0::2] <= counts[1::2]
            small = np.where(left_small, np.arange(n_split) * 2, np.arange(n_split) * 2 + 1)
            is_small = np.zeros(2 * n_split, dtype=bool)
            is_small[small] = True
            sel = is_small[local]
            small_local = np.cumsum(is_small) - 1  # child index -> small index
            h_small = _build_hist(
                codes,
                stats,
                rows[sel],
                small_local[local[sel]],
                n_split,
                feats,
                False,
                col_off,
                width,
                n_bins,
                usable,
                pool=pool,
            )
            h_big = hist[sp] - h_small
            hist = np.empty((2 * n_split,) + h_small.shape[1:])
            hist[small] = h_small
            hist[small ^ 1] = h_big
        frontier = child_ids
        P = child_S
        depth += 1
    if rows.shape[0]:
        row_leaf[rows] = frontier[local]

    cat = {key: np.concatenate([lv[key] for lv in levels]) for key in levels[0]}
    return GrownTree(row_leaf=row_leaf[row_pos], **cat)


def apply_binned(tree: GrownTree, codes: np.ndarray) -> np.ndarray:
    """Leaf (node index within ``tree``) of every column of feature-major ``codes``, shape (n_samples,)."""
    n = codes.shape[1]
    node = np.zeros(n, dtype=np.intp)
    active = np.arange(n)
    while active.shape[0]:
        f = tree.feature[node[active]]
        internal = f >= 0
        active, f = active[internal], f[internal]
        if not active.shape[0]:
            break
        nd = node[active]
        right = codes[f, active] > tree.bin[nd]
        node[active] = tree.left[nd] + right
    return node


# --------------------------------------------------------------------------- storage
class TreeArrays:
    """Several trees concatenated for storage and vectorised traversal.

    Attributes
    ----------
    feature : ndarray of shape (n_nodes,), int32; -1 at leaves
    threshold : ndarray of shape (n_nodes,), float64; go left when ``x <= threshold``
    left, right : ndarray of shape (n_nodes,), int32; children within the tree, -1 at leaves
    value : ndarray of shape (n_nodes, n_outputs), float64
    offsets : ndarray of shape (n_trees + 1,), int64; tree ``t`` is ``offsets[t]:offsets[t+1]``
    """

    def __init__(self, feature, threshold, left, right, value, offsets) -> None:
        self.feature = np.asarray(feature, dtype=np.int32)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int32)
        self.right = np.asarray(right, dtype=np.int32)
        self.value = np.asarray(value, dtype=np.float64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._compile()

    @classmethod
    def from_grown(cls, trees: list[GrownTree], edges: list[np.ndarray]) -> TreeArrays:
        """Concatenate grown trees, turning split bins into real thresholds."""
        feats, thr, lefts, rights, vals, offsets = [], [], [], [], [], [0]
        for t in trees:
            internal = t.feature >= 0
            th = np.full(t.feature.shape[0], np.inf)
            for i in np.flatnonzero(internal):
                th[i] = edges[t.feature[i]][t.bin[i]]
            feats.append(t.feature)
            thr.append(th)
            lefts.append(t.left)
            rights.append(np.where(internal, t.left + 1, -1).astype(np.int32))
            vals.append(t.value)
            offsets.append(offsets[-1] + t.feature.shape[0])
        return cls(
            np.concatenate(feats),
            np.concatenate(thr),
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(vals),
            np.asarray(offsets),
        )

    @property
    def n_trees(self) -> int:
        return self.offsets.shape[0] - 1

    def _compile(self) -> None:
        """Global-index arrays for traversal: leaves loop on themselves with threshold +inf.

        Derived once per fit or load (never saved): the distinct-split table, the
        packed node words of the deep traversal and the complete-tree form of
        shallow ensembles.
        """
        n = self.feature.shape[0]
        tree_of = np.repeat(np.arange(self.n_trees), np.diff(self.offsets))
        base = self.offsets[:-1][tree_of]
        leaf = self.feature < 0
        self._feat = np.where(leaf, 0, self.feature).astype(np.intp)
        self._thr = np.where(leaf, np.inf, self.threshold)
        self._left = np.where(leaf, np.arange(n), self.left + base).astype(np.intp)
        self._right = np.where(leaf, np.arange(n), self.right + base).astype(np.intp)
        self._feat_is_split = ~leaf
        # Depth of the deepest tree: number of traversal steps needed.
        self._depth = 0
        level = self.offsets[:-1].astype(np.intp)
        while level.shape[0]:
            level = level[~leaf[level]]
            if level.shape[0]:
                self._depth += 1
                level = np.concatenate([self._left[level], self._right[level]])
        # Children adjacent in every tree grown here; checked so stored trees may differ.
        self._adjacent = bool(np.all(self._right[~leaf] == self._left[~leaf] + 1))

        # Distinct splits ``x[f] > t``, sorted by (feature, threshold); id S is a
        # never-true split that leaves use. Many nodes share a split (255 bins per
        # feature), so one comparison per (split, row) serves every node using it.
        internal = np.flatnonzero(~leaf)
        pairs = np.stack([self.feature[internal].astype(np.float64), self.threshold[internal]], axis=1)
        uniq, inv = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
        S = uniq.shape[0]
        self._split_id = np.full(n, S, dtype=np.intp)
        self._split_id[internal] = inv.ravel()
        self._split_feat = np.append(uniq[:, 0].astype(np.intp), 0)
        self._split_thr = np.append(uniq[:, 1], np.inf)
        feats, first = np.unique(self._split_feat[:S], return_index=True)
        self._split_feats = feats  # features used by a split
        self._split_bounds = np.append(first, S)  # their runs in the split table
        self._split_rank = np.append(np.arange(S) - np.repeat(first, np.diff(self._split_bounds)), 0)
        # Deep traversal word per node: left child (global) << 32 | split id.
        self._node_word = None
        if self._adjacent and n < 2**31:
            self._node_word = (self._left.astype(np.int64) << 32) | self._split_id
        self._complete = self._compile_complete() if 1 <= self._depth <= _COMPLETE_MAX_DEPTH else None

    def _compile_complete(self) -> dict[str, Any]:
        """Shallow ensembles as complete trees over the distinct-split table.

        Every tree is padded to depth ``D`` in heap order; a padding node uses the
        never-true split, so it always goes left, and padding leaves repeat their
        ancestor leaf's value. Prediction evaluates each distinct split once per
        row, packs the comparisons 8 rows to a byte and picks each tree's path with
        bitwise selects, so no per-(tree, row) index is needed until the final leaf
        value lookup. Level ``L`` of the heap is stored bit-reversed, ``(2^L, T)``:
        the most recent path bit then selects between contiguous halves.
        """
        D = self._depth
        T = self.n_trees
        n_heap = 2**D - 1
        heap = np.full((T, n_heap), self._split_thr.shape[0] - 1, dtype=np.intp)  # never-true split
        leaf_node = np.zeros((T, 2**D), dtype=np.intp)
        is_leaf = ~self._feat_is_split
        # Walk all trees level by level at once: (tree, heap position, node).
        t_idx = np.arange(T)
        pos = np.zeros(T, dtype=np.intp)
        node = self.offsets[:-1].astype(np.intp)
        for level in range(D + 1):
            if level == D:
                leaf_node[t_idx, pos - n_heap] = node
                break
            heap[t_idx, pos] = self._split_id[node]
            # A leaf above depth D keeps going left (never-true split) and stays itself.
            lc = np.where(is_leaf[node], node, self._left[node])
            rc = np.where(is_leaf[node], node, self._right[node])
            t_idx = np.concatenate([t_idx, t_idx])
            node = np.concatenate([lc, rc])
            pos = np.concatenate([2 * pos + 1, 2 * pos + 2])
        levels = []
        for L in range(D):
            p = np.arange(2**L)
            rev = np.zeros_like(p)
            for i in range(L):
                rev |= ((p >> i) & 1) << (L - 1 - i)
            order = np.argsort(rev)  # slot q holds position p with rev(p) = q
            levels.append(np.ascontiguousarray(heap[:, 2**L - 1 + order].T))
        # Byte r of lut[k][v] is bit r (first row = most significant, np.packbits order)
        # of byte v, shifted to path bit k of the leaf index.
        unpacked = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)  # (256, 8)
        lut = [np.ascontiguousarray(unpacked << (D - 1 - k)).view(np.uint64).ravel() for k in range(D)]
        # Up to depth 4, two trees share one lookup: the pair's leaf index fits a byte.
        pair = 2 * D <= 8 and T >= 2
        half = T // 2 if pair else 0
        values = []
        for o in range(self.value.shape[1]):
            v = self.value[leaf_node, o]  # (T, 2^D)
            if pair:
                w = (v[:half, :, None] + v[half : 2 * half, None, :]).reshape(half, -1)
                tail = v[2 * half :]
                values.append((np.ascontiguousarray(w).ravel(), np.ascontiguousarray(tail).ravel()))
            else:
                values.append((np.ascontiguousarray(v).ravel(), None))
        return {"levels": levels, "lut": lut, "pair": pair, "half": half, "values": values}

    def _split_bits(self, X: np.ndarray) -> np.ndarray:
        """Outcome of every distinct split on every row: ndarray of shape (n_splits + 1, n_samples), bool.

        Few splits: gather the feature columns and compare. Many splits (deep trees
        on continuous features): rank each value among its feature's thresholds once
        (``searchsorted``) and compare uint8/int ranks, which moves 8x less memory.
        """
        n = X.shape[0]
        S1 = self._split_thr.shape[0]
        Xt = np.ascontiguousarray(X.T)
        if S1 <= 32 * X.shape[1]:
            return Xt[self._split_feat] > self._split_thr[:, None]
        dtype = np.uint8 if int(np.diff(self._split_bounds).max(initial=0)) < 255 else np.intp
        ranks = np.zeros((X.shape[1], n), dtype=dtype)
        for j, f in enumerate(self._split_feats):
            a, b = self._split_bounds[j], self._split_bounds[j + 1]
            # x > thr[k] exactly when k < rank (the number of thresholds below x).
            ranks[f] = np.searchsorted(self._split_thr[a:b], Xt[f], side="left")
        out = ranks[self._split_feat] > self._split_rank.astype(dtype)[:, None]
        out[-1] = False
        return out

    def leaf_values_complete(self, X: np.ndarray, output: int = 0) -> np.ndarray | None:
        """Sum over trees of the reached leaf's value, via the complete-tree form.

        Returns ndarray of shape (n_samples,), float64, or None when the ensemble is
        too deep for this form (use :meth:`apply`).
        """
        if self._complete is None:
            return None
        cf = self._complete
        n = X.shape[0]
        packed = np.packbits(self._split_bits(X), axis=1)  # (n_splits + 1, ceil(n / 8))
        leaf64 = None
        bits: list[np.ndarray] = []
        for k, heap_level in enumerate(cf["levels"]):
            cand = packed[heap_level]  # (2^k, T, n_bytes)
            for b in reversed(bits):
                h = cand.shape[0] // 2
                c0 = cand[:h]
                x = c0 ^ cand[h:]
                x &= b
                x ^= c0
                cand = x
            b = cand[0]
            bits.append(b)
            word = cf["lut"][k][b]  # (T, n_bytes) uint64: 8 rows' leaf bits
            if leaf64 is None:
                leaf64 = word
            else:
                leaf64 |= word
        T = leaf64.shape[0]
        table, tail = cf["values"][output]
        width = 1 << self._depth
        if cf["pair"]:
            half = cf["half"]
            key64 = leaf64[:half] << np.uint64(self._depth)
            key64 |= leaf64[half : 2 * half]
            key = key64.view(np.uint8)[:, :n]
            idx = np.add(key, (np.arange(half, dtype=np.intp) * (width * width))[:, None], dtype=np.intp)
            total = np.take(table, idx).sum(axis=0)
            if tail.shape[0]:
                last = leaf64[2 * half :].view(np.uint8)[:, :n]
                idx = np.add(last, (np.arange(tail.shape[0] // width, dtype=np.intp) * width)[:, None], dtype=np.intp)
                total += np.take(tail, idx).sum(axis=0)
            return total
        key = leaf64.view(np.uint8)[:, :n]
        idx = np.add(key, (np.arange(T, dtype=np.intp) * width)[:, None], dtype=np.intp)
        return np.take(table, idx).sum(axis=0)

    def leaf_sums(self, X: np.ndarray) -> np.ndarray:
        """Sum over trees of the reached leaves' values.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous

        Returns
        -------
        ndarray of shape (n_outputs, n_samples), float64
        """
        if self._complete is not None:
            return np.stack([self.leaf_values_complete(X, o) for o in range(self.value.shape[1])])
        leaves = self.apply(X)
        return np.stack([np.take(self.value[:, o], leaves).sum(axis=0) for o in range(self.value.shape[1])])

    def apply(self, X: np.ndarray, trees: slice | None = None) -> np.ndarray:
        """Leaf (global node index) of every row in every tree.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous

        Returns
        -------
        ndarray of shape (n_trees, n_samples), intp
        """
        roots = self.offsets[:-1] if trees is None else self.offsets[:-1][trees]
        n, d = X.shape
        S1 = self._split_thr.shape[0]
        if self._depth > 8 and self._node_word is not None and n and 2 * S1 <= roots.shape[0] * self._depth:
            # (the table costs S1 comparisons per row; worth it when the trees share splits)
            # Deep ensembles with shared splits: per step one node-word gather and one
            # split-table gather. Row chunks keep the table small and its index < 2^32.
            step = max(1, min(n, _SPLIT_TABLE_CELLS // S1))
            if step >= n:
                return self._apply_split_table(X, roots)
            return np.concatenate([self._apply_split_table(X[a : a + step], roots) for a in range(0, n, step)], axis=1)
        node = np.repeat(roots.astype(np.intp), n)
        rowbase = np.tile(np.arange(n, dtype=np.intp) * d, roots.shape[0])
        Xf = X.ravel()
        if self._depth <= 8:
            # Shallow trees: every (tree, row) pair steps each level; leaves loop on themselves.
            for _ in range(self._depth):
                x = Xf[rowbase + self._feat[node]]
                if self._adjacent:
                    node = self._left[node] + (x > self._thr[node])
                else:
                    node = np.where(x > self._thr[node], self._right[node], self._left[node])
        else:
            # Deep trees (forests): step only pairs still inside the tree, dropping the
            # ones that reached a leaf every few levels (leaves loop on themselves).
            pos = np.arange(node.shape[0])
            nd, rb = node, rowbase
            level = 0
            while nd.shape[0]:
                x = Xf[rb + self._feat[nd]]
                if self._adjacent:
                    nd = self._left[nd] + (x > self._thr[nd])
                else:
                    nd = np.where(x > self._thr[nd], self._right[nd], self._left[nd])
                level += 1
                if level % 3 == 0 or level >= self._depth:
                    inside = self._feat_is_split[nd]
                    out = ~inside
                    node[pos[out]] = nd[out]
                    nd, rb, pos = nd[inside], rb[inside], pos[inside]
        return node.reshape(roots.shape[0], n)

    def _apply_split_table(self, X: np.ndarray, roots: np.ndarray) -> np.ndarray:
        """:meth:`apply` through the split table ``C[split, row]`` (deep, adjacent-children trees).

        A node word holds ``left << 32 | split``; the row's key into the flat table
        is ``split * n + row``, so a step is: gather word, gather ``C``, add.
        """
        n = X.shape[0]
        C = self._split_bits(X).view(np.uint8).ravel()
        T = roots.shape[0]
        node = np.repeat(roots.astype(np.intp), n)
        words = self._node_word
        if n != 1:
            # Scale the split id by n once per call (cheaper than once per step).
            words = ((words >> 32) << 32) | (words & 0xFFFFFFFF) * n
        rows = np.tile(np.arange(n, dtype=np.int64), T)
        pos = np.arange(node.shape[0])
        nd = node.astype(np.int64)
        is_split = self._feat_is_split
        level = 0
        while nd.shape[0]:
            w = words[nd]
            key = w & 0xFFFFFFFF
            key += rows
            w >>= 32
            w += C[key]
            nd = w
            level += 1
            if level % 3 == 0 or level >= self._depth:
                inside = is_split[nd]
                out = ~inside
                node[pos[out]] = nd[out]
                nd, rows, pos = nd[inside], rows[inside], pos[inside]
        return node.reshape(T, n)

    def contributions(self, X: np.ndarray, output: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Saabas path contributions summed over trees (Saabas, "Interpreting random
        forests", 2014; the "approximate" contributions of XGBoost's ``pred_contribs``).

        Each split on feature ``f`` adds ``value[child] - value[node]`` to ``f``.

        Returns
        -------
        contrib : ndarray of shape (n_samples, n_features), float64
        bias : ndarray of shape (n_samples,), float64
            Sum of the root values; ``bias + contrib.sum(1)`` is the sum of the leaf values.
        """
        n, d = X.shape
        roots = self.offsets[:-1].astype(np.intp)
        node = np.repeat(roots, n)
        rows = np.tile(np.arange(n, dtype=np.intp), roots.shape[0])
        Xf = X.ravel()
        v = self.value[:, output]
        contrib = np.zeros(n * d)
        for _ in range(self._depth):
            f = self._feat[node]
            x = Xf[rows * d + f]
            nxt = np.where(x > self._thr[node], self._right[node], self._left[node])
            contrib += np.bincount(rows * d + f, weights=v[nxt] - v[node], minlength=n * d)
            node = nxt
        bias = np.full(n, v[roots].sum())
        return contrib.reshape(n, d), bias

    # ---- persistence: flat arrays with a prefix
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}feature": self.feature,
            f"{prefix}threshold": self.threshold,
            f"{prefix}left": self.left,
            f"{prefix}right": self.right,
            f"{prefix}value": self.value,
            f"{prefix}offsets": self.offsets,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> TreeArrays:
        return cls(*(arrays[f"{prefix}{k}"] for k in ("feature", "threshold", "left", "right", "value", "offsets")))


def resolve_max_features(max_features, n_features: int) -> int | None:
    """Number of candidate features per split, scikit-learn's conventions.

    ``None`` -> all; ``"sqrt"`` / ``"log2"``; an int; a float fraction in (0, 1].
    """
    if max_features is None:
        return None
    if isinstance(max_features, str):
        if max_features == "sqrt":
            return max(1, int(np.sqrt(n_features)))
        if max_features == "log2":
            return max(1, int(np.log2(n_features)))
        raise ValueError(f"max_features: expected 'sqrt', 'log2', int, float or None, got {max_features!r}")
    if isinstance(max_features, (bool, np.bool_)):
        raise ValueError(f"max_features: expected 'sqrt', 'log2', int, float or None, got {max_features!r}")
    if isinstance(max_features, (int, np.integer)):
        if max_features < 1:
            raise ValueError(f"max_features: expected >= 1, got {max_features}")
        return min(int(max_features), n_features)
    if isinstance(max_features, (float, np.floating)):
        if not 0.0 < max_features <= 1.0:
            raise ValueError(f"max_features: expected a fraction in (0, 1], got {max_features}")
        return max(1, int(max_features * n_features))
    raise ValueError(f"max_features: expected 'sqrt', 'log2', int, float or None, got {max_features!r}")
