"""CART decision trees (Breiman, Friedman, Olshen & Stone, *Classification and
Regression Trees*, Wadsworth, 1984) with histogram-binned split search.

Each feature is cut into at most ``max_bins`` quantile bins (LightGBM-style, see
:mod:`scratch_models._histogram`), so a split threshold is one of those cut
points rather than any midpoint between sorted values; with 255 bins this costs
little accuracy and makes fitting linear in the number of rows per level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scratch_models import _histogram as H
from scratch_models.base import BaseModel, ClassifierMixin, RegressorMixin
from scratch_models.validation import check_X_y


class _TreeStateMixin:
    """Persistence of ``trees_`` (a :class:`~scratch_models._histogram.TreeArrays`)
    as flat ``.npz`` arrays: feature, threshold, left, right, value per node,
    concatenated over trees with ``offsets``."""

    trees_: H.TreeArrays

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        trees = self.trees_
        del self.trees_
        try:
            meta, arrays = super()._get_state()  # type: ignore[misc]
        finally:
            self.trees_ = trees
        arrays.update(trees.to_arrays("trees_"))
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        arrays = dict(arrays)
        self.trees_ = H.TreeArrays.from_arrays(arrays, "trees_")
        for key in list(arrays):
            if key.startswith("trees_"):
                del arrays[key]
        super()._set_state(meta, arrays)  # type: ignore[misc]


def _check_tree_params(model: Any) -> None:
    """Shared hyperparameter checks; raise ``ValueError`` with what was expected."""
    if model.max_depth is not None and (not isinstance(model.max_depth, (int, np.integer)) or model.max_depth < 1):
        raise ValueError(f"max_depth: expected an int >= 1 or None, got {model.max_depth!r}")
    if model.min_samples_split < 2:
        raise ValueError(f"min_samples_split: expected >= 2, got {model.min_samples_split!r}")
    if model.min_samples_leaf < 1:
        raise ValueError(f"min_samples_leaf: expected >= 1, got {model.min_samples_leaf!r}")
    if model.min_impurity_decrease < 0:
        raise ValueError(f"min_impurity_decrease: expected >= 0, got {model.min_impurity_decrease!r}")


def _classification_inputs(model: Any, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a classifier's criterion and data; set ``classes_``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    y_idx : ndarray of shape (n_samples,), int
        Index of each row's class in ``model.classes_``.
    indicator : ndarray of shape (n_samples, n_classes), float64
        One-hot class indicators: the per-row class statistics trees accumulate.
    """
    if model.criterion not in ("gini", "entropy", "log_loss"):
        raise ValueError(f"criterion: expected 'gini' or 'entropy', got {model.criterion!r}")
    X, y = check_X_y(X, y)
    y_idx = model._encode_y(y)
    indicator = np.zeros((X.shape[0], model.classes_.shape[0]))
    indicator[np.arange(X.shape[0]), y_idx] = 1.0
    return X, y_idx, indicator


def _criterion(name: str) -> H.Criterion:
    if name == "gini":
        return H.gini_criterion()
    if name in ("entropy", "log_loss"):
        return H.entropy_criterion()
    if name == "squared_error":
        return H.squared_error_criterion()
    raise ValueError(f"criterion: expected 'gini', 'entropy' or 'squared_error', got {name!r}")


def _importances(trees: list[H.GrownTree], n_features: int) -> np.ndarray:
    """Total split gain per feature, normalised to sum to 1 (all zero if no split)."""
    imp = np.zeros(n_features)
    for t in trees:
        internal = t.feature >= 0
        imp += np.bincount(t.feature[internal], weights=t.gain[internal], minlength=n_features)
    s = imp.sum()
    return imp / s if s > 0 else imp


class _BaseDecisionTree(_TreeStateMixin, BaseModel):
    _default_criterion = ""

    def __init__(
        self,
        criterion: str = "",
        max_depth: int | None = None,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        min_impurity_decrease: float = 0.0,
        max_features: int | float | str | None = None,
        max_bins: int = 255,
        random_state: int | None = None,
    ) -> None:
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_impurity_decrease = min_impurity_decrease
        self.max_features = max_features
        self.max_bins = max_bins
        self.random_state = random_state

    def _fit_stats(self, X: np.ndarray, stats: np.ndarray, sample_weight: np.ndarray | None) -> None:
        _check_tree_params(self)
        crit = _criterion(self.criterion)
        n, d = X.shape
        rng = np.random.default_rng(self.random_state)
        k = H.resolve_max_features(self.max_features, d)
        mapper = H.BinMapper(self.max_bins, rng).fit(X)
        codes = mapper.transform(X)
        if sample_weight is None:
            rows = np.arange(n)
        else:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (n,) or not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
                raise ValueError(f"sample_weight: expected {n} finite non-negative values")
            stats = stats * sample_weight[:, None]
            rows = np.flatnonzero(sample_weight > 0)
        total_w = crit.weight(stats[rows].sum(axis=0))
        tree = H.grow_tree(
            codes,
            mapper.n_bins,
            stats,
            rows,
            crit,
            max_depth=self.max_depth,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            # sklearn's min_impurity_decrease is weighted by N_t / N; our gains are N_t-weighted.
            min_gain=self.min_impurity_decrease * float(total_w),
            max_features=k,
            rng=rng,
        )
        self.trees_ = H.TreeArrays.from_grown([tree], mapper.edges)
        self.feature_importances_ = _importances([tree], d)
        self.n_features_in_ = d
        self.n_leaves_ = int(np.sum(tree.feature < 0))
        self.depth_ = int(self.trees_._depth)

    def apply(self, X: Any) -> np.ndarray:
        """Index of the leaf each row lands in.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), intp
        """
        X = self._validate_X(X)
        return self.trees_.apply(X)[0]


class DecisionTreeClassifier(ClassifierMixin, _BaseDecisionTree):
    """CART classification tree with histogram-binned split search.

    Parameters
    ----------
    criterion : {"gini", "entropy"}, default "gini"
        Impurity whose weighted decrease a split maximises.
    max_depth : int or None, default None
        Maximum depth; None grows until leaves are pure or hit the size limits.
    min_samples_split : int, default 2
        A node needs at least this (weighted) number of rows to be split.
    min_samples_leaf : int, default 1
        Each child must keep at least this (weighted) number of rows.
    min_impurity_decrease : float, default 0.0
        Split only if ``N_t / N * (impurity - N_L/N_t * impurity_L - N_R/N_t * impurity_R)``
        exceeds this (scikit-learn's definition).
    max_features : int, float, {"sqrt", "log2"} or None, default None
        Candidate features drawn per node (random forests); None uses all.
    max_bins : int, default 255
        Quantile bins per feature (2..255).
    random_state : int or None, default None
        Seed of ``np.random.default_rng`` (feature draws, bin-edge sampling on
        more than 200,000 rows).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    trees_ : TreeArrays
        The fitted tree (flat node arrays); leaf values are class frequencies.
    feature_importances_ : ndarray of shape (n_features,), float64
        Total impurity decrease per feature, summing to 1.
    n_leaves_ : int
    depth_ : int

    References
    ----------
    Breiman, Friedman, Olshen & Stone, *Classification and Regression Trees*, 1984.
    Ke et al., "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS 2017
    (histogram split search).
    """

    def __init__(
        self,
        criterion: str = "gini",
        max_depth: int | None = None,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        min_impurity_decrease: float = 0.0,
        max_features: int | float | str | None = None,
        max_bins: int = 255,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            criterion=criterion,
            max_depth=max_depth,
            min_samples_split=min_samples_split,
            min_samples_leaf=min_samples_leaf,
            min_impurity_decrease=min_impurity_decrease,
            max_features=max_features,
            max_bins=max_bins,
            random_state=random_state,
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DecisionTreeClassifier:
        """Grow the tree.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), float64
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), float64, optional
            Non-negative row weights; rows with weight 0 are ignored.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad shapes, non-finite values, a single class or invalid hyperparameters.
        """
        X, _, stats = _classification_inputs(self, X, y)
        self._fit_stats(X, stats, sample_weight)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class frequencies of the leaf each row reaches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Rows sum to 1; columns follow ``classes_``.
        """
        leaves = self.apply(X)
        return self.trees_.value[leaves]


class DecisionTreeRegressor(RegressorMixin, _BaseDecisionTree):
    """CART regression tree (squared error) with histogram-binned split search.

    Parameters
    ----------
    criterion : {"squared_error"}, default "squared_error"
    max_depth, min_samples_split, min_samples_leaf, min_impurity_decrease, max_features, max_bins, random_state
        As in :class:`DecisionTreeClassifier`; impurity is the variance of ``y``.

    Attributes
    ----------
    n_features_in_ : int
    trees_ : TreeArrays
        Leaf values are the mean target of the leaf's rows.
    feature_importances_ : ndarray of shape (n_features,), float64
    n_leaves_ : int
    depth_ : int

    References
    ----------
    Breiman, Friedman, Olshen & Stone, *Classification and Regression Trees*, 1984.
    """

    def __init__(
        self,
        criterion: str = "squared_error",
        max_depth: int | None = None,
        min_samples_split: int = 2,
        min_samples_leaf: int = 1,
        min_impurity_decrease: float = 0.0,
        max_features: int | float | str | None = None,
        max_bins: int = 255,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            criterion=criterion,
            max_depth=max_depth,
            min_samples_split=min_samples_split,
            min_samples_leaf=min_samples_leaf,
            min_impurity_decrease=min_impurity_decrease,
            max_features=max_features,
            max_bins=max_bins,
            random_state=random_state,
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> DecisionTreeRegressor:
        """Grow the tree on ``X`` of shape (n_samples, n_features) and real ``y`` of shape (n_samples,).

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
        stats = np.column_stack([np.ones_like(y), y])
        self._fit_stats(X, stats, sample_weight)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Mean target of the leaf each row reaches: ndarray of shape (n_samples,), float64."""
        leaves = self.apply(X)
        return self.trees_.value[leaves, 0]
