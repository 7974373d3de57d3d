"""Flat storage of fitted trees and their vectorised traversal (prediction, leaves, contributions).

:class:`TreeArrays` concatenates an ensemble's trees with real-valued thresholds (a
split on bin ``b`` of feature ``f`` becomes ``x[f] <= edges[f][b]``), is what the
estimators save, and predicts without a per-row or per-tree Python loop: shallow
ensembles through a complete-tree form over the distinct splits, deep ones by stepping
every (tree, row) pair a level at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models._histogram.contributions import by_feature_tables, path_tables
from scratch_models._histogram.grower import GrownTree

#: Ensembles up to this depth predict through the complete-tree form.
_COMPLETE_MAX_DEPTH = 6
#: Rows per chunk of the complete-form look-ups (their (tree, row) temporaries stay in cache).
_ROW_CHUNK = 128
#: Rows per chunk of the by-feature contributions: (look-up, row) temporaries of a few MB at
#: most, and one chunk for a micro-batch's alerts (smaller chunks measured slower there).
_FEATURE_ROW_CHUNK = 512
#: Cells (splits x rows) of the split table of one deep-traversal row chunk.
_SPLIT_TABLE_CELLS = 1 << 24


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
        heap_node = np.zeros((T, 2 * n_heap + 1), dtype=np.intp)  # node at every heap position, leaves too
        is_leaf = ~self._feat_is_split
        # Walk all trees level by level at once: (tree, heap position, node).
        t_idx = np.arange(T)
        pos = np.zeros(T, dtype=np.intp)
        node = self.offsets[:-1].astype(np.intp)
        for level in range(D + 1):
            heap_node[t_idx, pos] = node
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
        values: list[tuple[np.ndarray, np.ndarray | None]] = []
        for o in range(self.value.shape[1]):
            v = self.value[leaf_node, o]  # (T, 2^D)
            if pair:
                w = (v[:half, :, None] + v[half : 2 * half, None, :]).reshape(half, -1)
                tail = v[2 * half :]
                values.append((np.ascontiguousarray(w).ravel(), np.ascontiguousarray(tail).ravel()))
            else:
                values.append((np.ascontiguousarray(v).ravel(), None))
        paths = path_tables(heap_node, self._feat, self.value, D)
        by_feature = by_feature_tables(paths, T, D, int(self._feat.max(initial=0)) + 1)
        return {
            "levels": levels,
            "lut": lut,
            "pair": pair,
            "half": half,
            "values": values,
            "paths": paths,
            "by_feature": by_feature,
        }

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

    def _complete_form(self) -> dict[str, Any]:
        if self._complete is None:
            raise ValueError(f"depth {self._depth}: no complete-tree form (depth 1..{_COMPLETE_MAX_DEPTH}), use apply")
        return self._complete

    def _leaf_words(self, X: np.ndarray) -> np.ndarray:
        """Leaf index of every row in every tree of the complete form, 8 rows to a word.

        Returns
        -------
        ndarray of shape (n_trees, ceil(n_samples / 8)), uint64
            Byte ``r`` of word ``w`` (native byte order) is row ``8 w + r``'s leaf index
            in ``0 .. 2^D - 1``, first split's outcome in the most significant path bit.
        """
        cf = self._complete_form()
        packed = np.packbits(self._split_bits(X), axis=1)  # (n_splits + 1, ceil(n / 8))
        leaf64: np.ndarray | None = None
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
        assert leaf64 is not None  # depth >= 1: at least one level
        return leaf64

    def leaf_indices(self, X: np.ndarray) -> np.ndarray:
        """Leaf index of every row in every tree of the complete-tree form.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous

        Returns
        -------
        ndarray of shape (n_trees, n_samples), uint8
            ``0 .. 2^D - 1``, the first split's outcome in the most significant bit (a
            view of the packed words :meth:`leaf_values_complete` and :meth:`contributions`
            read: pass it, or its columns of some rows, to them instead of ``X``).

        Raises
        ------
        ValueError
            If the ensemble has no complete-tree form (depth outside 1..6).
        """
        return self._leaf_words(X).view(np.uint8)[:, : X.shape[0]]

    def leaf_values_complete(self, X: np.ndarray, output: int = 0, leaves: np.ndarray | None = None) -> np.ndarray:
        """Sum over trees of the reached leaf's value, via the complete-tree form.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous
        output : int, default 0
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaf_indices` of ``X``, when already known.

        Returns
        -------
        ndarray of shape (n_samples,), float64

        Raises
        ------
        ValueError
            If the ensemble has no complete-tree form (depth outside 1..6): use :meth:`apply`.
        """
        cf = self._complete_form()
        key = self.leaf_indices(X) if leaves is None else leaves
        T = key.shape[0]
        table, tail = cf["values"][output]
        width = 1 << self._depth
        if cf["pair"]:
            half = cf["half"]
            pair = key[:half] << self._depth
            pair |= key[half : 2 * half]
            idx = pair.astype(np.intp)  # then add in place: cheaper than a mixed-type add
            idx += (np.arange(half, dtype=np.intp) * (width * width))[:, None]
            total = np.take(table, idx).sum(axis=0)
            if tail.shape[0]:
                last = key[2 * half :]
                idx = np.add(last, (np.arange(tail.shape[0] // width, dtype=np.intp) * width)[:, None], dtype=np.intp)
                total += np.take(tail, idx).sum(axis=0)
            return total
        idx = np.add(key, (np.arange(T, dtype=np.intp) * width)[:, None], dtype=np.intp)
        return np.take(table, idx).sum(axis=0)

    def leaf_sums(self, X: np.ndarray, leaves: np.ndarray | None = None) -> np.ndarray:
        """Sum over trees of the reached leaves' values.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaf_indices` of ``X`` (complete-tree form only), when already known.

        Returns
        -------
        ndarray of shape (n_outputs, n_samples), float64
        """
        if self._complete is not None:
            if leaves is None:
                leaves = self.leaf_indices(X)
            return np.stack([self.leaf_values_complete(X, o, leaves) for o in range(self.value.shape[1])])
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
        assert words is not None  # apply() takes this path only with node words
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

    def contributions(
        self, X: np.ndarray, output: int = 0, leaves: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Saabas path contributions summed over trees (Saabas, "Interpreting random
        forests", 2014; the "approximate" contributions of XGBoost's ``pred_contribs``).

        Each split on feature ``f`` adds ``value[child] - value[node]`` to ``f``.
        Ensembles with a complete-tree form look each row's contributions up by its
        leaf indices: per feature, one gather per pair of trees that split on it
        (:func:`~scratch_models._histogram.contributions.by_feature_tables`), or, when
        that is more gathers, per level one gather of each row's path
        (:func:`~scratch_models._histogram.contributions.path_tables`) and one ``np.bincount``.
        Either sums the same terms as :meth:`_contributions_by_level`, in another
        order: equal to rounding (the path form, level by level and trees in order,
        gives its very floats).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64, C-contiguous
        output : int, default 0
            Column of ``value`` to attribute.
        leaves : ndarray of shape (n_trees, n_samples), uint8, optional
            :meth:`leaf_indices` of ``X`` (complete-tree form only), when already known.

        Returns
        -------
        contrib : ndarray of shape (n_samples, n_features), float64
        bias : ndarray of shape (n_samples,), float64
            Sum of the root values; ``bias + contrib.sum(1)`` is the sum of the leaf values.
        """
        if self._complete is None:
            return self._contributions_by_level(X, output)
        n, d = X.shape
        # Row-major: a caller's leaves[:, rows] comes out column-major, slow to read tree by tree.
        key = self.leaf_indices(X) if leaves is None else np.ascontiguousarray(leaves)
        bias = np.full(n, self.value[self.offsets[:-1], output].sum())
        if self._complete["by_feature"] is not None:
            return self._contributions_by_feature(key, d, output), bias
        width = 1 << self._depth
        feat, delta = self._complete["paths"]
        tree_base = (np.arange(self.n_trees, dtype=np.intp) * width)[:, None]
        contrib = np.empty((n, d))
        # Row chunks keep the (tree, row) temporaries in cache.
        for a in range(0, n, _ROW_CHUNK):
            idx = np.add(key[:, a : a + _ROW_CHUNK], tree_base, dtype=np.intp)
            m = idx.shape[1]
            row_base = np.arange(m, dtype=np.intp) * d
            part = np.zeros(m * d)
            for f, dv in zip(feat, delta[output]):
                bins = np.take(f, idx)
                bins += row_base
                # One level's sum per (row, feature), trees in order: bincount adds in input order.
                part += np.bincount(bins.ravel(), weights=np.take(dv, idx).ravel(), minlength=m * d)
            contrib[a : a + m] = part.reshape(m, d)
        return contrib, bias

    def _contributions_by_feature(self, key: np.ndarray, d: int, output: int) -> np.ndarray:
        """:meth:`contributions` through :func:`~scratch_models._histogram.contributions.by_feature_tables`'s look-ups.

        Parameters
        ----------
        key : ndarray of shape (n_trees, n_samples), uint8, C-contiguous
            :meth:`leaf_indices` of the rows.
        d : int
            Features of the rows.
        output : int

        Returns
        -------
        ndarray of shape (n_samples, d), float64
        """
        bf = self._complete_form()["by_feature"]
        first, second, starts, features = bf["first"], bf["second"], bf["starts"], bf["features"]
        table = bf["tables"][output]
        base = (np.arange(first.shape[0], dtype=np.intp) << (bf["shift"] + self._depth))[:, None]
        n = key.shape[1]
        contrib = np.zeros((n, d))
        for a in range(0, n, _FEATURE_ROW_CHUNK):
            part = key[:, a : a + _FEATURE_ROW_CHUNK]
            code = part[first] << bf["shift"]
            code |= part[second]
            idx = code.astype(np.intp)  # then add in place: cheaper than a mixed-type add
            idx += base
            # Each used feature's sum over its look-ups: (n_used, rows).
            sums = np.add.reduceat(np.take(table, idx), starts, axis=0)
            contrib[a : a + part.shape[1], features] = sums.T
        return contrib

    def _contributions_by_level(self, X: np.ndarray, output: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`contributions` by stepping every (tree, row) pair a level at a time (any depth)."""
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
