"""Look-up tables of Saabas path contributions for the complete-tree form of shallow ensembles.

Built once per fit or load by :class:`scratch_models._histogram.predictor.TreeArrays`: once
a row's leaf in every tree is known, its contributions are gathers from these tables
(Saabas, "Interpreting random forests", 2014; XGBoost's approximate ``pred_contribs``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["by_feature_tables", "path_tables"]


def path_tables(
    heap_node: np.ndarray, feature: np.ndarray, value: np.ndarray, depth: int
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Per (tree, leaf index) of the complete form, the split of each level on its path.

    The leaf index fixes the path, so a row's path contributions are a look-up
    once its leaf is known. Level ``k`` of leaf ``l`` of tree ``t`` is entry
    ``t * 2^D + l`` of ``feat[k]`` (the split's feature) and ``delta[o][k]``
    (``value[child] - value[node]`` of output ``o``). A padding node (a leaf
    above depth ``D``) stays itself, so it credits 0.0 to feature 0, as the
    level-by-level walk of ``TreeArrays._contributions_by_level`` does.

    Parameters
    ----------
    heap_node : ndarray of shape (n_trees, 2^(D+1) - 1), intp
        Global node at every heap position of the padded trees.
    feature : ndarray of shape (n_nodes,), intp
        Split feature of every node (0 at leaves).
    value : ndarray of shape (n_nodes, n_outputs), float64
        Value of every node.
    depth : int
        ``D``, the depth of the complete form.

    Returns
    -------
    feat : list of D ndarray of shape (n_trees * 2^D,), intp
    delta : list over outputs of list of D ndarray of shape (n_trees * 2^D,), float64
    """
    D = depth
    leaf = np.arange(2**D)
    pos = np.zeros(2**D, dtype=np.intp)
    feat: list[np.ndarray] = []
    delta: list[list[np.ndarray]] = [[] for _ in range(value.shape[1])]
    for k in range(D):
        child = 2 * pos + 1 + ((leaf >> (D - 1 - k)) & 1)
        node, nxt = heap_node[:, pos], heap_node[:, child]  # (T, 2^D)
        feat.append(np.ascontiguousarray(feature[node]).ravel())
        for o in range(value.shape[1]):
            v = value[:, o]
            delta[o].append(np.ascontiguousarray(v[nxt] - v[node]).ravel())
        pos = child
    return feat, delta


def by_feature_tables(
    paths: tuple[list[np.ndarray], list[list[np.ndarray]]], n_trees: int, depth: int, n_features: int
) -> dict[str, Any] | None:
    """Path contributions as, per feature, a sum over trees of a look-up by leaf index.

    A tree's path contributions to feature ``f`` depend on its leaf alone:
    ``w[t, leaf, f]``, the sum of the path's deltas on splits of ``f``. Feature ``f``'s
    contribution to a row is then the sum of ``w[t, leaf_t, f]`` over the trees ``t``
    whose weights on ``f`` are not all zero. Up to depth 4 two such trees share one
    look-up (their pair of leaves indexes ``w[a, :, f] + w[b, :, f]``, as
    :meth:`~scratch_models._histogram.predictor.TreeArrays.leaf_values_complete` pairs
    trees), so a row costs one gather per pair, without the scatter-add of the path form.
    Used when that is fewer gathers than the path form's ``depth x n_trees`` per row.

    Parameters
    ----------
    paths : (feat, delta)
        :func:`path_tables`.
    n_trees : int
    depth : int
        ``D``, the depth of the complete form.
    n_features : int
        One more than the largest split feature.

    Returns
    -------
    dict or None
        ``first``, ``second`` (ndarray of shape (n_pairs,), intp: the trees of each
        look-up; a tree left alone is its own second, with a table blind to it),
        ``starts`` (ndarray of shape (n_used,), intp: each used feature's first look-up),
        ``features`` (ndarray of shape (n_used,), intp), ``shift`` (int: bits of the
        first tree's leaf in the pair index), ``tables`` (list over outputs of ndarray
        of shape (n_pairs * 2^(shift + D),), float64). None when the path form is cheaper.
    """
    D = depth
    T, W = n_trees, 1 << D
    d = n_features
    feat, delta = paths
    tree = np.repeat(np.arange(T), W)
    leaf = np.tile(np.arange(W), T)
    weights = []  # per output: (T, W, d)
    for o in range(len(delta)):
        w = np.zeros((T, W, d))
        for f, dv in zip(feat, delta[o]):
            np.add.at(w, (tree, leaf, f), dv)
        weights.append(w)
    used = np.zeros((T, d), dtype=bool)
    for w in weights:
        used |= (w != 0).any(axis=1)
    pair = 2 * D <= 8
    first: list[int] = []
    second: list[int] = []
    starts: list[int] = []
    features: list[int] = []
    for column in range(d):
        trees = np.flatnonzero(used[:, column]).tolist()
        if not trees:
            continue
        features.append(column)
        starts.append(len(first))
        step = 2 if pair else 1
        for i in range(0, len(trees), step):
            first.append(trees[i])
            second.append(trees[i + 1] if pair and i + 1 < len(trees) else trees[i])
    if not first or len(first) >= D * T:
        return None
    a, b = np.asarray(first, dtype=np.intp), np.asarray(second, dtype=np.intp)
    f_of = np.repeat(np.asarray(features), np.diff(np.append(starts, len(first))))
    tables = []
    for w in weights:
        wa = w[a, :, f_of]  # (n_pairs, W)
        if pair:
            wb = np.where((a != b)[:, None], w[b, :, f_of], 0.0)
            tables.append(np.ascontiguousarray(wa[:, :, None] + wb[:, None, :]).ravel())
        else:
            tables.append(np.ascontiguousarray(wa).ravel())
    return {
        "first": a,
        "second": b,
        "starts": np.asarray(starts, dtype=np.intp),
        "features": np.asarray(features, dtype=np.intp),
        "shift": D if pair else 0,
        "tables": tables,
    }
