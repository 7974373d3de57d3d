"""Level-wise growth of one histogram tree on binned data.

Trees are grown level by level and every step of a level is one numpy operation over
all nodes of that level (no per-node or per-row Python loop). A child's histogram is
its parent's minus its sibling's, so only the smaller child of each split is built
from rows (LightGBM, Ke et al., NeurIPS 2017, sec. 2). Splits maximise a
:class:`~scratch_models._histogram.splitting.Criterion`: CART's impurity decrease
(Breiman et al. 1984) or XGBoost's second-order gain (Chen & Guestrin, KDD 2016).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from scratch_models._histogram.histogram import build_histogram
from scratch_models._histogram.splitting import Criterion, best_splits_dense, best_splits_sparse

#: Histogram cells (nodes x features x bins x stats) per node chunk.
_HIST_CELLS = 1 << 24
#: Histogram cells per block of nodes whose splits are evaluated together (~1 MB: stays in cache).
_EVAL_CELLS = 1 << 17


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
    k = int(max_features) if per_node and max_features is not None else allowed.shape[0]

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
            if rng is None:
                raise ValueError("grow_tree: rng is needed when max_features draws candidates per node")
            feats = np.argsort(rng.random((m, allowed.shape[0])), axis=1)[:, :k]
            feats = allowed[feats]
        else:
            feats = allowed
        n_elem = rows.shape[0] * k
        if n_elem < m * width:
            best_gain, f_best, b_best, Lbest = best_splits_sparse(
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
                    hist[n0:n1] = build_histogram(
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
            block_bounds = np.searchsorted(local, np.arange(0, m + step, step)) if per_node else None
            best_gain = np.empty(m)
            f_best = np.empty(m, dtype=np.int64)
            b_best = np.empty(m, dtype=np.int64)
            Lbest = np.empty((m, S_))
            for c, n0 in enumerate(range(0, m, step)):
                n1 = min(m, n0 + step)
                if block_bounds is not None:
                    a, b = block_bounds[c], block_bounds[c + 1]
                    h = build_histogram(
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
                    assert hist is not None  # shared candidates: built above for the whole level
                    h = hist[n0:n1]
                (best_gain[n0:n1], f_best[n0:n1], b_best[n0:n1], Lbest[n0:n1]) = best_splits_dense(
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
            h_small = build_histogram(
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
