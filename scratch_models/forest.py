"""Random forests (Breiman, "Random Forests", Machine Learning 45, 2001).

Each tree is a CART tree grown on a bootstrap sample of the rows, choosing every
split among ``max_features`` features drawn afresh at each node; the forest's
probability is the mean of the trees' leaf class frequencies. The matrix is binned
once (255 quantile bins per feature, see :mod:`scratch_models._histogram`) and the
``uint8`` codes are shared by all trees; a bootstrap sample is represented by
integer row weights, so no row is copied.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from scratch_models import _histogram as H
from scratch_models.base import BaseModel, ClassifierMixin, RegressorMixin
from scratch_models.tree import (
    _check_tree_params,
    _classification_inputs,
    _criterion,
    _importances,
    _TreeStateMixin,
)
from scratch_models.validation import check_X_y


class _BaseForest(_TreeStateMixin, BaseModel):
    """Bootstrap + per-node feature sampling loop shared by the forest classes."""

    # Hyperparameters both forests' ``__init__`` store.
    n_estimators: int
    criterion: str
    max_depth: int | None
    min_samples_split: int
    min_samples_leaf: int
    min_impurity_decrease: float
    max_features: int | float | str | None
    bootstrap: bool
    max_samples: int | float | None
    oob_score: bool
    max_bins: int
    n_jobs: int | None
    random_state: int | None

    def _n_draws(self, n: int) -> int:
        ms = self.max_samples
        if ms is None:
            return n
        if isinstance(ms, (int, np.integer)) and not isinstance(ms, bool):
            if not 1 <= ms:
                raise ValueError(f"max_samples: expected >= 1, got {ms}")
            return int(ms)
        if isinstance(ms, (float, np.floating)) and 0.0 < ms <= 1.0:
            return max(1, int(round(ms * n)))
        raise ValueError(f"max_samples: expected an int, a fraction in (0, 1] or None, got {ms!r}")

    def _n_threads(self) -> int:
        nj = self.n_jobs
        if nj is None:
            return 1
        if isinstance(nj, bool) or not isinstance(nj, (int, np.integer)) or nj == 0 or nj < -1:
            raise ValueError(f"n_jobs: expected None, -1 or an int >= 1, got {nj!r}")
        return (os.cpu_count() or 1) if nj == -1 else int(nj)

    def _grow_forest(
        self, X: np.ndarray, stats0: np.ndarray, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Grow ``trees_`` from per-row statistics ``stats0`` (one-hot classes or ``(1, y)``).

        ``labels`` (class index per row) marks one-hot statistics, whose histograms
        are then one weighted bincount. Returns the out-of-bag sums of tree outputs
        and OOB counts per row when ``oob_score`` is set, else None.
        """
        if not isinstance(self.n_estimators, (int, np.integer)) or self.n_estimators < 1:
            raise ValueError(f"n_estimators: expected an int >= 1, got {self.n_estimators!r}")
        if self.oob_score and not self.bootstrap:
            raise ValueError("oob_score=True needs bootstrap=True")
        _check_tree_params(self)
        n_threads = self._n_threads()
        crit = _criterion(self.criterion)
        n, d = X.shape
        k = H.resolve_max_features(self.max_features, d)
        n_draws = self._n_draws(n)

        rng = np.random.default_rng(self.random_state)
        mapper = H.BinMapper(self.max_bins, rng).fit(X)
        codes = mapper.transform(X)
        # One independent generator per tree, all derived from random_state: the
        # forest is the same whatever the number of threads or their scheduling.
        seeds = rng.integers(0, 2**63 - 1, size=self.n_estimators)
        labels = None if labels is None else np.asarray(labels, dtype=np.intp)

        def grow(seed: np.integer) -> tuple[H.GrownTree, np.ndarray | None]:
            tree_rng = np.random.default_rng(seed)
            if self.bootstrap:
                # Bootstrap counts as row weights: rows drawn twice weigh 2, undrawn rows 0.
                w = np.bincount(tree_rng.integers(0, n, size=n_draws), minlength=n).astype(np.float64)
                rows = np.flatnonzero(w)
                stats = stats0 * w[:, None]
            else:
                w = np.ones(n)
                rows = np.arange(n)
                stats = stats0
            min_gain = self.min_impurity_decrease * float(crit.weight(stats[rows].sum(axis=0)))
            tree = H.grow_tree(
                codes,
                mapper.n_bins,
                stats,
                rows,
                crit,
                max_depth=self.max_depth,
                min_samples_split=self.min_samples_split,
                min_samples_leaf=self.min_samples_leaf,
                min_gain=min_gain,
                max_features=k,
                rng=tree_rng,
                labels=labels,
                weights=None if labels is None else w,
            )
            tree.row_leaf = np.empty(0, dtype=np.int32)  # a view would keep the per-row array alive
            oob = np.flatnonzero(w == 0) if self.oob_score else None
            return tree, oob

        if n_threads > 1 and self.n_estimators > 1:
            # numpy releases the GIL in the gathers, bincounts and sorts that grow a tree.
            with ThreadPoolExecutor(min(n_threads, self.n_estimators)) as pool:
                grown = list(pool.map(grow, seeds))
        else:
            grown = [grow(seed) for seed in seeds]
        trees = [t for t, _ in grown]
        out = None
        if self.oob_score:
            oob_sum = np.zeros((n, trees[0].value.shape[1]))
            oob_n = np.zeros(n)
            for tree, oob in grown:
                oob_sum[oob] += tree.value[H.apply_binned(tree, codes[:, oob])]
                oob_n[oob] += 1
            out = (oob_sum, oob_n)
        self.trees_ = H.TreeArrays.from_grown(trees, mapper.edges)
        self.feature_importances_ = _importances(trees, d)
        self.n_features_in_ = d
        return out


class RandomForestClassifier(ClassifierMixin, _BaseForest):
    """Random forest of histogram-binned CART classification trees.

    Parameters
    ----------
    n_estimators : int, default 100
        Number of trees.
    criterion : {"gini", "entropy"}, default "gini"
    max_depth : int or None, default None
        None grows each tree until its leaves are pure or hit the size limits.
    min_samples_split : int, default 2
    min_samples_leaf : int, default 1
        Minimum (bootstrap-weighted) rows per leaf.
    min_impurity_decrease : float, default 0.0
    max_features : int, float, {"sqrt", "log2"} or None, default "sqrt"
        Candidate features drawn at each node.
    bootstrap : bool, default True
        Grow each tree on a bootstrap sample (n draws with replacement); False uses all rows.
    max_samples : int, float or None, default None
        Bootstrap sample size: a count, a fraction of the rows, or None for all.
    oob_score : bool, default False
        Score every training row with the trees whose bootstrap left it out; sets
        ``oob_decision_function_`` and ``oob_score_`` (accuracy). Needs ``bootstrap``.
    max_bins : int, default 255
        Quantile bins per feature.
    n_jobs : int or None, default None
        Threads growing trees at once (None: 1, -1: all cores). Each tree has its own
        seeded generator, so the forest does not depend on ``n_jobs``.
    random_state : int or None, default None
        Seed of ``np.random.default_rng``; each tree gets its own generator seeded
        from it, so the forest is reproducible.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    trees_ : TreeArrays
        All trees; node values are class frequencies.
    feature_importances_ : ndarray of shape (n_features,), float64
        Mean decrease in impurity, summing to 1.
    oob_decision_function_ : ndarray of shape (n_samples, n_classes), float64
        Only with ``oob_score``; NaN rows for rows in every bootstrap sample.
    oob_score_ : float
        Only with ``oob_score``: out-of-bag accuracy over rows with an OOB prediction.

    References
    ----------
    Breiman, "Random Forests", Machine Learning 45(1), 5-32, 2001.
    Breiman, Friedman, Olshen & Stone, *Classification and Regression Trees*, 1984.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        criterion: str = "gini",
        max_depth: int | None = None,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        min_impurity_decrease: float = 0.0,
        max_features: int | float | str | None = "sqrt",
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        oob_score: bool = False,
        max_bins: int = 255,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.oob_score = oob_score
        self.max_bins = max_bins
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> RandomForestClassifier:
        """Grow the forest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), float64
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes, non-finite values, a single class or invalid hyperparameters.
        """
        X, y_idx, onehot = _classification_inputs(self, X, y)
        oob_sum = self._grow_forest(X, onehot, y_idx)
        if oob_sum is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                dec = oob_sum[0] / oob_sum[1][:, None]
            seen = oob_sum[1] > 0
            dec[~seen] = np.nan
            self.oob_decision_function_ = dec
            self.oob_score_ = (
                float(np.mean(np.argmax(dec[seen], axis=1) == y_idx[seen])) if seen.any() else float("nan")
            )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean over trees of the leaf class frequencies.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Rows sum to 1; columns follow ``classes_``.
        """
        X = self._validate_X(X)
        # Per-class sums over trees, then / n_trees: the same arithmetic as a mean over trees.
        return np.ascontiguousarray((self.trees_.leaf_sums(X) / self.trees_.n_trees).T)

    def apply(self, X: Any) -> np.ndarray:
        """Leaf (global node index into ``trees_``) of every row in every tree.

        Returns
        -------
        ndarray of shape (n_samples, n_trees), intp
        """
        X = self._validate_X(X)
        return self.trees_.apply(X).T

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Saabas path contributions to the positive-class probability.

        For every row, ``contributions.sum(axis=1) + bias`` equals
        ``predict_proba(X)[:, -1]`` where ``bias`` is the mean root frequency of the
        last class (the training rate of the bootstrap samples).

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
        """
        X = self._validate_X(X)
        contrib, _ = self.trees_.contributions(X, output=self.classes_.shape[0] - 1)
        return contrib / self.trees_.n_trees


class RandomForestRegressor(RegressorMixin, _BaseForest):
    """Random forest of histogram-binned CART regression trees (squared error).

    Parameters
    ----------
    n_estimators : int, default 100
    criterion : {"squared_error"}, default "squared_error"
    max_depth : int or None, default None
    min_samples_split : int, default 2
    min_samples_leaf : int, default 1
    min_impurity_decrease : float, default 0.0
    max_features : int, float, {"sqrt", "log2"} or None, default 1.0
        Candidate features per node; 1.0 (all, scikit-learn's default for
        regression) makes the forest bagged trees.
    bootstrap : bool, default True
    max_samples : int, float or None, default None
    oob_score : bool, default False
        Sets ``oob_prediction_`` and ``oob_score_`` (R^2 over rows with an OOB prediction).
    max_bins : int, default 255
    n_jobs : int or None, default None
        Threads growing trees at once (None: 1, -1: all cores).
    random_state : int or None, default None

    Attributes
    ----------
    n_features_in_ : int
    trees_ : TreeArrays
        Node values are mean targets.
    feature_importances_ : ndarray of shape (n_features,), float64
    oob_prediction_ : ndarray of shape (n_samples,), float64
        Only with ``oob_score``; NaN for rows in every bootstrap sample.
    oob_score_ : float

    References
    ----------
    Breiman, "Random Forests", Machine Learning 45(1), 5-32, 2001.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        criterion: str = "squared_error",
        max_depth: int | None = None,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        min_impurity_decrease: float = 0.0,
        max_features: int | float | str | None = 1.0,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        oob_score: bool = False,
        max_bins: int = 255,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.oob_score = oob_score
        self.max_bins = max_bins
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> RandomForestRegressor:
        """Grow the forest on ``X`` of shape (n_samples, n_features) and real ``y`` of shape (n_samples,).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes, non-finite values or invalid hyperparameters.
        """
        if self.criterion != "squared_error":
            raise ValueError(f"criterion: expected 'squared_error', got {self.criterion!r}")
        X, y = check_X_y(X, y)
        y = y.astype(np.float64)
        oob = self._grow_forest(X, np.column_stack([np.ones_like(y), y]))
        if oob is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                pred = oob[0][:, 0] / oob[1]
            seen = oob[1] > 0
            pred[~seen] = np.nan
            self.oob_prediction_ = pred
            resid = np.sum((y[seen] - pred[seen]) ** 2)
            total = np.sum((y[seen] - y[seen].mean()) ** 2)
            self.oob_score_ = float(1.0 - resid / total) if total > 0 else float("nan")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Mean over trees of the leaf mean: ndarray of shape (n_samples,), float64."""
        X = self._validate_X(X)
        return self.trees_.leaf_sums(X)[0] / self.trees_.n_trees
